package logs

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/boot/console"
)

// record is a Line with its Text copied, for comparisons.
type record struct {
	Stream          Stream
	Text            string
	Partial, Contin bool
}

// memDest keeps what it was given.
type memDest struct {
	mu      sync.Mutex
	records []record
	batches int
	closed  bool
}

func (m *memDest) Write(lines []Line) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches++
	for _, l := range lines {
		m.records = append(m.records, record{l.Stream, string(l.Text), l.Partial, l.Continued})
	}
	return nil
}

func (m *memDest) Close() error { m.closed = true; return nil }

func TestWriterSplitsLines(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   []record
	}{
		{
			name:   "whole lines in one write",
			writes: []string{"a\nbb\n\nccc\n"},
			want:   []record{{Stdout, "a", false, false}, {Stdout, "bb", false, false}, {Stdout, "", false, false}, {Stdout, "ccc", false, false}},
		},
		{
			name:   "line across writes",
			writes: []string{"hel", "lo wo", "rld\nnext"},
			want:   []record{{Stdout, "hello world", false, false}, {Stdout, "next", false, false}},
		},
		{
			name:   "unterminated last line flushed on close",
			writes: []string{"no newline"},
			want:   []record{{Stdout, "no newline", false, false}},
		},
		{
			name:   "long line split with continuation",
			max:    4,
			writes: []string{"abcdefghij\nxy\n"},
			want: []record{
				{Stdout, "abcd", true, false}, {Stdout, "efgh", true, true}, {Stdout, "ij", false, true},
				{Stdout, "xy", false, false},
			},
		},
		{
			name:   "long line split across writes",
			max:    4,
			writes: []string{"ab", "cdef", "gh", "\n"},
			want:   []record{{Stdout, "abcd", true, false}, {Stdout, "efgh", false, true}},
		},
		{
			name:   "exactly max is one line",
			max:    4,
			writes: []string{"abcd\n"},
			want:   []record{{Stdout, "abcd", false, false}},
		},
		{
			name:   "long unterminated line at close",
			max:    4,
			writes: []string{"abcdef"},
			want:   []record{{Stdout, "abcd", true, false}, {Stdout, "ef", false, true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &memDest{}
			s, err := Open("c", Options{MaxLine: tt.max, Destinations: []Destination{m}})
			if err != nil {
				t.Fatal(err)
			}
			w := s.Writer(Stdout)
			for _, p := range tt.writes {
				if n, err := w.Write([]byte(p)); n != len(p) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			w.Close()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if !m.closed {
				t.Error("destination not closed")
			}
			if len(m.records) != len(tt.want) {
				t.Fatalf("got %+v\nwant %+v", m.records, tt.want)
			}
			for i := range tt.want {
				if m.records[i] != tt.want[i] {
					t.Errorf("line %d: got %+v want %+v", i, m.records[i], tt.want[i])
				}
			}
		})
	}
}

func TestFileAndConsole(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	var con bytes.Buffer
	clock := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	s, err := Open("web", Options{Dir: dir, Console: &con, MaxLine: 8, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	out, errw := s.Writer(Stdout), s.Writer(Stderr)
	io.WriteString(out, "hello\n0123456789\n")
	io.WriteString(errw, "oops")
	errw.Close()
	out.Close()
	s.Close()

	wantConsole := "[web] hello\n[web] 01234567\n[web]+ 89\n[web] oops\n"
	if con.String() != wantConsole {
		t.Errorf("console:\n%q\nwant\n%q", con.String(), wantConsole)
	}
	path := filepath.Join(dir, "web.log")
	if s.Path() != path {
		t.Errorf("Path = %q", s.Path())
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != FileMode&^currentUmask() {
		t.Errorf("mode %v, want %v", st.Mode().Perm(), os.FileMode(FileMode))
	}
	data, _ := os.ReadFile(path)
	ts := "2025-01-02T03:04:05.000000006Z"
	wantFile := ts + " stdout F hello\n" + ts + " stdout P 01234567\n" + ts + " stdout F 89\n" + ts + " stderr F oops\n"
	if string(data) != wantFile {
		t.Errorf("file:\n%s\nwant\n%s", data, wantFile)
	}

	// Reopening appends.
	s2, err := Open("web", Options{Dir: dir, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	w := s2.Writer(Stdout)
	io.WriteString(w, "again\n")
	s2.Close()
	data, _ = os.ReadFile(path)
	if !strings.HasSuffix(string(data), ts+" stdout F again\n") || !strings.HasPrefix(string(data), wantFile) {
		t.Errorf("after reopen:\n%s", data)
	}

	// Every record parses back.
	sc := bufio.NewScanner(bytes.NewReader(data))
	var texts []string
	for sc.Scan() {
		l, err := ParseRecord(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if !l.Time.Equal(clock) {
			t.Errorf("time %v", l.Time)
		}
		texts = append(texts, string(l.Stream)+":"+string(l.Text))
	}
	if got := strings.Join(texts, ","); got != "stdout:hello,stdout:01234567,stdout:89,stderr:oops,stdout:again" {
		t.Errorf("parsed %s", got)
	}
}

func currentUmask() os.FileMode {
	m := unix.Umask(0o022)
	unix.Umask(m)
	return os.FileMode(m)
}

func TestParseRecordErrors(t *testing.T) {
	tests := []struct {
		rec, want string
	}{
		{"garbage", "no time"},
		{"2025-01-02T03:04:05Z", "no time"},
		{"yesterday stdout F x", "cannot parse"},
		{"2025-01-02T03:04:05Z stdin F x", "no stream"},
		{"2025-01-02T03:04:05Z stdout X x", "no F/P tag"},
		{"2025-01-02T03:04:05Z stdout Fx", "no F/P tag"},
	}
	for _, tt := range tests {
		_, err := ParseRecord([]byte(tt.rec))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseRecord(%q) = %v, want %q", tt.rec, err, tt.want)
		}
	}
	l, err := ParseRecord([]byte("2025-01-02T03:04:05Z stderr P"))
	if err != nil || !l.Partial || len(l.Text) != 0 || l.Stream != Stderr {
		t.Errorf("empty partial: %+v %v", l, err)
	}
}

// slowWriter takes 10ms per write, as a serial console would for a line.
type slowWriter struct{ n int }

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(10 * time.Millisecond)
	w.n++
	return len(p), nil
}

func TestFastWriterNotSlowedBySlowConsole(t *testing.T) {
	dir := t.TempDir()
	con := console.New(&slowWriter{})
	s, err := Open("fast", Options{Dir: dir, Console: con})
	if err != nil {
		t.Fatal(err)
	}
	w := s.Writer(Stdout)
	line := strings.Repeat("x", 99) + "\n"
	chunk := []byte(strings.Repeat(line, 320)) // 32000 bytes, like a pipe read
	const chunks = 300                         // 96000 lines, 9.6 MB
	start := time.Now()
	for range chunks {
		w.Write(chunk)
	}
	w.Close()
	elapsed := time.Since(start)
	s.Close()
	// At 10ms a line the console alone would need 16 minutes.
	if elapsed > 5*time.Second {
		t.Fatalf("96000 lines took %v: the writer waited for the console", elapsed)
	}
	// 13 MB of records: one rotation at the default 10 MiB.
	entries, err := TailFiles(dir, "fast", All)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(entries); n != 320*chunks {
		t.Fatalf("files have %d lines, want %d: the file must lose nothing", n, 320*chunks)
	}
	if _, err := os.Stat(filepath.Join(dir, "fast.log.1")); err != nil {
		t.Errorf("no rotation at the default size: %v", err)
	}
	t.Logf("96000 lines in %v", elapsed)
}

func TestOpenRejectsBadNames(t *testing.T) {
	for _, n := range []string{"", ".", "..", "a/b"} {
		if _, err := Open(n, Options{Dir: t.TempDir()}); err == nil {
			t.Errorf("Open(%q) succeeded", n)
		}
	}
}

// failDest fails until told otherwise.
type failDest struct{ fail bool }

func (f *failDest) Write([]Line) error {
	if f.fail {
		return io.ErrClosedPipe
	}
	return nil
}
func (f *failDest) Close() error { return nil }

func TestFailingDestinationDoesNotStopOthers(t *testing.T) {
	m := &memDest{}
	f := &failDest{fail: true}
	s, _ := Open("c", Options{Destinations: []Destination{f, m}})
	w := s.Writer(Stderr)
	if n, err := w.Write([]byte("a\n")); n != 2 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	f.fail = false
	w.Write([]byte("b\n"))
	s.Close()
	w.Write([]byte("after close\n"))
	if len(m.records) != 2 || m.records[1].Text != "b" {
		t.Fatalf("records %+v", m.records)
	}
}
