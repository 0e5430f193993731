package shell

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// oneByteReader delivers its input one byte per Read, as a slow serial
// line does.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

// readLines runs ReadLine until it fails with anything but ErrInterrupt
// (io.EOF once the input runs out) and returns every result.
func readLines(t *testing.T, in io.Reader, complete CompleteFunc) (lines []string, errs []error, out string) {
	t.Helper()
	var buf bytes.Buffer
	e := NewEditor(in, &buf, complete)
	for i := 0; i < 100; i++ {
		line, err := e.ReadLine("> ")
		lines = append(lines, line)
		errs = append(errs, err)
		if err != nil && !errors.Is(err, ErrInterrupt) {
			break
		}
	}
	return lines, errs, buf.String()
}

func TestEditorLines(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // lines returned before the input ran out
	}{
		{"plain CR", "ls\r", []string{"ls"}},
		{"plain LF", "ls\n", []string{"ls"}},
		{"CR LF is one line", "ls\r\nps\r\n", []string{"ls", "ps"}},
		{"empty lines", "\r\r", []string{"", ""}},
		{"LF LF is two lines", "\n\n", []string{"", ""}},
		{"backspace DEL", "lss\x7f\r", []string{"ls"}},
		{"backspace BS", "lss\x08\r", []string{"ls"}},
		{"backspace at start", "\x7f\x7fls\r", []string{"ls"}},
		{"ctrl-u kills to start", "rm -rf /\x15ls\r", []string{"ls"}},
		{"ctrl-u mid-line keeps the tail", "xxls\x1b[D\x1b[D\x15\r", []string{"ls"}},
		{"ctrl-w kills a word", "cat /etc/foo  \x17/etc/hostname\r", []string{"cat /etc/hostname"}},
		{"ctrl-k kills to end", "ls /tmp\x01\x1b[C\x1b[C\x0b\r", []string{"ls"}},
		{"left arrow insert", "l\x1b[Ds\x1b[C\r", []string{"sl"}},
		{"insert mid-line", "ct\x1b[Da\r", []string{"cat"}},
		{"ss3 arrows", "ct\x1bODa\x1bOC!\r", []string{"cat!"}},
		{"home end", "b\x01a\x05c\r", []string{"abc"}},
		{"home end sequences", "b\x1b[Ha\x1b[Fc\x1b[1~_\x1b[4~.\r", []string{"_abc."}},
		{"delete key", "abc\x01\x1b[3~\r", []string{"bc"}},
		{"ctrl-d deletes under the cursor", "abc\x01\x04\r", []string{"bc"}},
		{"word moves", "one two\x1bb\x1bb_\x1bf\x1bf!\r", []string{"_one two!"}},
		{"ctrl-arrow word moves", "one two\x1b[1;5D_\r", []string{"one _two"}},
		{"alt-backspace", "one two\x1b\x7f\r", []string{"one "}},
		{"unknown CSI ignored", "a\x1b[12;40Rb\x1b[?25hc\r", []string{"abc"}},
		{"CSI cut short by a control", "a\x1b[1\rb\r", []string{"a", "b"}},
		{"runaway CSI dropped", "a\x1b[" + strings.Repeat("1", 40) + "b\r", []string{"a" + strings.Repeat("1", 40-maxSequence-1) + "b"}},
		{"lone ESC then letter", "a\x1bxb\r", []string{"ab"}},
		{"ESC ESC [A is up", "\x1b\x1b[A\r", []string{""}},
		{"utf-8", "é€\r", []string{"é€"}},
		{"utf-8 backspace removes a character", "aé\x7f\r", []string{"a"}},
		{"broken utf-8 dropped", "a\xc3b\xff\r", []string{"ab"}},
		{"other controls ignored", "a\x07\x00b\r", []string{"ab"}},
		{"history up", "ls /\r\x1b[A\r", []string{"ls /", "ls /"}},
		{"history up up down", "one\rtwo\r\x1b[A\x1b[A\x1b[B\r", []string{"one", "two", "two"}},
		{"history keeps the draft", "one\rdra\x1b[A\x1b[Bft\r", []string{"one", "draft"}},
		{"history ctrl-p ctrl-n", "one\rtwo\r\x10\x10\x0e\x0e\r", []string{"one", "two", ""}},
		{"history skips repeats", "a\ra\rb\r\x1b[A\x1b[A\x1b[A\r", []string{"a", "a", "b", "a"}},
		{"history at the top stays", "a\r\x1b[A\x1b[A\x1b[A\r", []string{"a", "a"}},
	}
	for _, tt := range tests {
		for _, slow := range []bool{false, true} {
			name := tt.name
			var in io.Reader = strings.NewReader(tt.in)
			if slow {
				name += "/byte-by-byte"
				in = oneByteReader{in}
			}
			t.Run(name, func(t *testing.T) {
				lines, errs, out := readLines(t, in, nil)
				// The input runs out: the last call returns io.EOF.
				if len(errs) == 0 || !errors.Is(errs[len(errs)-1], io.EOF) {
					t.Fatalf("errors %v: the last should be io.EOF", errs)
				}
				got := lines[:len(lines)-1]
				if strings.Join(got, "|") != strings.Join(tt.want, "|") {
					t.Errorf("lines %q, want %q\noutput %q", got, tt.want, out)
				}
			})
		}
	}
}

func TestEditorOutput(t *testing.T) {
	tests := []struct {
		name string
		in   string
		out  string // what the terminal receives for the first line
	}{
		{"echo and accept", "ls\r", "> ls\r\n"},
		{"backspace at end", "lx\x7fs\r", "> lx\b \bs\r\n"},
		{"left then right moves by re-echo", "ab\x1b[D\x1b[C\r", "> ab\bb\r\n"},
		{"insert mid-line refreshes", "ac\x1b[Db\r", "> ac\b\r> abc\x1b[K\x1b[1D\r\n"},
		{"ctrl-l redraws the row", "ab\x0c\r", "> ab\r> ab\x1b[K\r\n"},
		{"ctrl-c", "ab\x03", "> ab^C\r\n"},
		{"ctrl-d on an empty line", "\x04", "> \r\n"},
		{"home on an empty line writes nothing", "\x01\r", "> \r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			e := NewEditor(strings.NewReader(tt.in), &buf, nil)
			_, _ = e.ReadLine("> ")
			if buf.String() != tt.out {
				t.Errorf("output %q, want %q", buf.String(), tt.out)
			}
		})
	}
}

func TestEditorReturns(t *testing.T) {
	e := NewEditor(strings.NewReader("abc\x03\x04"), io.Discard, nil)
	if _, err := e.ReadLine("> "); !errors.Is(err, ErrInterrupt) {
		t.Errorf("Ctrl-C: %v, want ErrInterrupt", err)
	}
	if _, err := e.ReadLine("> "); !errors.Is(err, io.EOF) {
		t.Errorf("Ctrl-D on an empty line: %v, want io.EOF", err)
	}
	boom := errors.New("gone")
	e = NewEditor(errReader{boom}, io.Discard, nil)
	if _, err := e.ReadLine("> "); !errors.Is(err, boom) {
		t.Errorf("read error: %v, want %v", err, boom)
	}
	if h := e.History(); len(h) != 0 {
		t.Errorf("history %q after no lines", h)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestEditorCompletion(t *testing.T) {
	complete := func(line []rune, pos int) (int, []string) {
		start := strings.LastIndexByte(string(line[:pos]), ' ') + 1
		var out []string
		for _, c := range []string{"mount", "umount", "dmesg", "/etc/", "/etc/photon/", "poweroff", "ps"} {
			if strings.HasPrefix(c, string(line[start:pos])) {
				out = append(out, c)
			}
		}
		return start, out
	}
	tests := []struct {
		name, in, want, outHas string
	}{
		{"unique gets a space", "dm\t\r", "dmesg ", ""},
		{"common prefix", "ls /et\t\r", "ls /etc/", ""},
		{"several are listed", "p\t\r", "p", "poweroff  ps\r\n"},
		{"nothing matches", "zz\t\r", "zz", ""},
		{"completes mid-line", "x\x01m\t\r", "mount x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			e := NewEditor(strings.NewReader(tt.in), &buf, complete)
			line, err := e.ReadLine("> ")
			if err != nil || line != tt.want {
				t.Errorf("line %q, %v; want %q", line, err, tt.want)
			}
			if tt.outHas != "" && !strings.Contains(buf.String(), tt.outHas) {
				t.Errorf("output %q lacks %q", buf.String(), tt.outHas)
			}
		})
	}
}

// blockingReader returns its data, then blocks until closed.
type blockingReader struct {
	data []byte
	wait chan struct{}
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if len(b.data) > 0 {
		n := copy(p, b.data)
		b.data = b.data[n:]
		return n, nil
	}
	<-b.wait
	return 0, io.EOF
}

func TestEditorAroundAndRedraw(t *testing.T) {
	var buf bytes.Buffer
	in := &blockingReader{data: []byte("ab\x1b[D"), wait: make(chan struct{})}
	e := NewEditor(in, &buf, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.ReadLine("> ")
	}()
	// Wait for the editor to have taken the input.
	for i := 0; ; i++ {
		e.mu.Lock()
		ready := e.active && string(e.buf) == "ab" && e.pos == 1
		e.mu.Unlock()
		if ready {
			break
		}
		if i > 1000 {
			t.Fatal("editor did not take the input")
		}
		time.Sleep(time.Millisecond)
	}
	e.mu.Lock()
	buf.Reset()
	e.mu.Unlock()
	e.Around(func() { buf.WriteString("[ 1.0] message\n") })
	e.mu.Lock()
	got := buf.String()
	buf.Reset()
	e.mu.Unlock()
	want := "\r\x1b[K[ 1.0] message\n\r> ab\x1b[K\x1b[1D"
	if got != want {
		t.Errorf("Around wrote %q, want %q", got, want)
	}
	e.Redraw()
	e.mu.Lock()
	got = buf.String()
	e.mu.Unlock()
	if got != "\r> ab\x1b[K\x1b[1D" {
		t.Errorf("Redraw wrote %q", got)
	}
	close(in.wait)
	<-done
	// No line is edited: Around only writes, Redraw does nothing.
	buf.Reset()
	e.Around(func() { buf.WriteString("x\n") })
	e.Redraw()
	if buf.String() != "x\n" {
		t.Errorf("idle Around/Redraw wrote %q", buf.String())
	}
}

func TestEditorNewlineBeforePrompt(t *testing.T) {
	var buf bytes.Buffer
	e := NewEditor(strings.NewReader("a\rb\r"), &buf, nil)
	e.ReadLine("> ")
	io.WriteString(e.Writer(), "no newline")
	buf.Reset()
	e.ReadLine("> ")
	if !strings.HasPrefix(buf.String(), "\r\n> ") {
		t.Errorf("prompt after unterminated output: %q", buf.String())
	}
}

func TestEditorPromptFollows(t *testing.T) {
	var buf bytes.Buffer
	in := &blockingReader{data: []byte("ls"), wait: make(chan struct{})}
	e := NewEditor(in, &buf, nil)
	host := "photon"
	var mu sync.Mutex
	e.promptFunc = func() string { mu.Lock(); defer mu.Unlock(); return host + "# " }
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.ReadLine("photon# ")
	}()
	for i := 0; ; i++ {
		e.mu.Lock()
		ready := string(e.buf) == "ls"
		e.mu.Unlock()
		if ready {
			break
		}
		if i > 1000 {
			t.Fatal("editor did not take the input")
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	host = "web"
	mu.Unlock()
	e.Redraw()
	e.mu.Lock()
	got := buf.String()
	e.mu.Unlock()
	if !strings.HasSuffix(got, "\rweb# ls\x1b[K") {
		t.Errorf("redraw after the host name changed: %q", got)
	}
	close(in.wait)
	<-done
}
