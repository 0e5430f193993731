package logs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/photon-init/photon-init/pkg/boot/console"
)

// slowPipe is a console device that takes perWrite for every write, as a
// serial line would (115200 baud carries a 100-byte line in about 9 ms;
// 1 ms is kind to the console).
type slowPipe struct {
	perWrite time.Duration

	mu     sync.Mutex
	bytes  int64
	writes int
	text   strings.Builder
}

func (p *slowPipe) Write(b []byte) (int, error) {
	time.Sleep(p.perWrite)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bytes += int64(len(b))
	p.writes++
	p.text.Write(b)
	return len(b), nil
}

func (p *slowPipe) stats() (int64, int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes, p.writes, p.text.String()
}

// lineWidth is the flood's line length, newline included.
const lineWidth = 100

// appendFloodLine appends numbered line i, lineWidth bytes with its
// newline: "line 000000001 xxx...x\n".
func appendFloodLine(b []byte, i int) []byte {
	b = append(b, "line "...)
	var digits [9]byte
	for k := len(digits) - 1; k >= 0; k-- {
		digits[k] = byte('0' + i%10)
		i /= 10
	}
	b = append(b, digits[:]...)
	b = append(b, ' ')
	for range lineWidth - 16 {
		b = append(b, 'x')
	}
	return append(b, '\n')
}

// produce writes numbered lines 1..n to w as fast as it can, in 64 KiB
// writes that cut lines anywhere, as a container's stdout would.
func produce(w io.Writer, n int) error {
	const chunk = 64 << 10
	buf := make([]byte, 0, chunk+lineWidth)
	for i := 1; i <= n; i++ {
		buf = appendFloodLine(buf, i)
		if len(buf) >= chunk || i == n {
			m := min(chunk, len(buf))
			if _, err := w.Write(buf[:m]); err != nil {
				return err
			}
			buf = buf[:copy(buf, buf[m:])]
			if i == n && len(buf) > 0 {
				if _, err := w.Write(buf); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func TestFlood20MB(t *testing.T) {
	flood(t, 20<<20, Rotation{MaxSize: 2 << 20, MaxFiles: 20})
}

func TestFlood200MB(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MB flood skipped under -short; TestFlood20MB runs the same checks")
	}
	flood(t, 200<<20, Rotation{MaxSize: 16 << 20, MaxFiles: 20})
}

var notShownRE = regexp.MustCompile(`^\[flood\] (\d+) lines not shown; see (.+)$`)

// flood writes size bytes of numbered lines through a pipe into a Sink as
// fast as possible while the console is a slow device behind
// pkg/boot/console's non-blocking Console, a slow follower and readers
// of the files and the ring run, and checks that the writer was not held
// to the console's speed, that the files hold every line in order, rotated
// at the configured size, and that the console accounts for every line
// (shown or counted as not shown).
func flood(t *testing.T, size int, rot Rotation) {
	dir := t.TempDir()
	total := size / lineWidth
	dev := &slowPipe{perWrite: time.Millisecond}
	con := console.New(dev)
	rings := NewRings(RingOptions{Dir: dir})
	s, err := Open("flood", Options{
		Dir: dir, Rotation: rot, Console: con,
		ConsoleLimit: ConsoleLimit{ReportEvery: 250 * time.Millisecond},
		Destinations: rings.Destinations("flood"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ring := rings.Get("flood")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The container's stdout: a pipe copied into the Sink, as the
	// runtime does.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		w := s.Writer(Stdout)
		io.Copy(w, pr)
		w.Close()
		pr.Close()
	}()

	// A slow follower: it must be told what it missed, exactly.
	var followed, followMissed int
	followDone := make(chan error, 1)
	follower := ring.Follow(ctx)
	go func() {
		last := 0
		for last < total {
			lines, missed, err := follower.Next()
			if err != nil {
				followDone <- err
				return
			}
			followMissed += int(missed)
			for i, l := range lines {
				want := last + 1
				if i == 0 {
					want += int(missed)
				}
				if int(l.Seq) != want || lineSeq(t, l.Text) != want {
					followDone <- fmt.Errorf("follower: line %d (Seq %d) where %d was due", lineSeq(t, l.Text), l.Seq, want)
					return
				}
				last = want
				followed++
			}
			if len(lines) == 0 {
				last += int(missed)
			}
			time.Sleep(2 * time.Millisecond)
		}
		followDone <- nil
	}()

	// A reader of the API's tail across the files and the ring.
	const tailN = 20000
	readerDone := make(chan error, 1)
	reads := 0
	go func() {
		for {
			select {
			case <-copied:
				readerDone <- nil
				return
			case <-time.After(20 * time.Millisecond):
			}
			var got []int
			err := ring.Stream(ctx, Query{Tail: tailN}, func(lines []Entry, _ uint64) error {
				for _, l := range lines {
					got = append(got, lineSeq(t, l.Text))
				}
				return nil
			})
			if err != nil {
				readerDone <- err
				return
			}
			for i := 1; i < len(got); i++ {
				if got[i] != got[i-1]+1 {
					readerDone <- fmt.Errorf("tail while rotating: %d after %d", got[i], got[i-1])
					return
				}
			}
			if len(got) > 0 && got[0] > 1 && len(got) != tailN {
				readerDone <- fmt.Errorf("tail while rotating: %d lines, want %d", len(got), tailN)
				return
			}
			reads++
		}
	}()

	start := time.Now()
	if err := produce(pw, total); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	<-copied
	elapsed := time.Since(start)
	conBytes, conWrites, _ := dev.stats()
	if err := <-readerDone; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-followDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the follower did not reach the last line: %d followed, %d missed", followed, followMissed)
	}
	if followed+followMissed != total || followMissed == 0 {
		t.Errorf("follower: %d lines and %d missed, want %d in all, some missed", followed, followMissed, total)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	con.Flush(10 * time.Second)

	// The writer's speed against the console's.
	mb := float64(total*lineWidth) / (1 << 20)
	writerRate := mb / elapsed.Seconds()
	conRate := float64(conBytes) / 1024 / elapsed.Seconds()
	deviceMax := float64(time.Second/dev.perWrite) * 107 / (1 << 20) // MB/s if every write were a line
	t.Logf("flood: %d lines, %.0f MB in %v: writer %.0f MB/s; console device got %d lines, %.1f KB/s meanwhile (its most, at one line a write: %.2f MB/s)",
		total, mb, elapsed.Round(time.Millisecond), writerRate, conWrites, conRate, deviceMax)
	t.Logf("follower: %d lines followed, %d missed; %d tail reads of %d lines during the flood", followed, followMissed, reads, tailN)
	if writerRate < 20*deviceMax {
		t.Errorf("writer %.1f MB/s is not far above the console's %.2f MB/s: it was held to the console", writerRate, deviceMax)
	}

	// The files: every line in order, rotated at the size.
	if n := checkFiles(t, dir, "flood", 1, rot.MaxSize); n != total {
		t.Fatalf("the files hold %d lines, want %d", n, total)
	}
	files := logFiles(t, dir, "flood")
	recordSize := int64(len("2025-01-02T03:04:05.123456789Z stdout F ")) + lineWidth
	for _, f := range files[:len(files)-1] { // all but the newest are full
		st, _ := os.Stat(f)
		if st.Size() <= rot.MaxSize-recordSize {
			t.Errorf("%s: %d bytes: rotated before %d", filepath.Base(f), st.Size(), rot.MaxSize)
		}
	}
	t.Logf("%d files of at most %d bytes", len(files), rot.MaxSize)

	// The ring and the files' tail agree.
	tail := ring.Tail(5)
	checkRun(t, "ring tail", tail, total-4, 5, 0)
	fromFiles, err := TailFiles(dir, "flood", 5)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, "files tail", fromFiles, total-4, 5, 0)

	// The console: every line either shown or counted.
	_, _, text := dev.stats()
	shown, notShown, reports := 0, 0, 0
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if m := notShownRE.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			notShown += n
			reports++
			if m[2] != filepath.Join(dir, "flood.log") {
				t.Errorf("report names %s", m[2])
			}
			continue
		}
		if !strings.HasPrefix(l, "[flood] line ") {
			t.Fatalf("console line %q", l)
		}
		shown++
	}
	t.Logf("console: %d lines shown, %d not shown in %d reports", shown, notShown, reports)
	if reports == 0 || shown+notShown != total {
		t.Errorf("console: %d shown + %d not shown, want %d", shown, notShown, total)
	}
}

func TestProduce(t *testing.T) {
	var b strings.Builder
	if err := produce(&b, 1000); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	i := 1
	for sc.Scan() {
		if len(sc.Text()) != lineWidth-1 || lineSeq(t, sc.Bytes()) != i {
			t.Fatalf("line %d: %q", i, sc.Text())
		}
		i++
	}
	if i != 1001 {
		t.Fatalf("%d lines", i-1)
	}
}

// BenchmarkSinkThroughput writes 64 KiB chunks of 100-byte lines (cut
// anywhere) into a Sink; MB/s is the speed a container can write at.
func BenchmarkSinkThroughput(b *testing.B) {
	chunk := make([]byte, 0, 64<<10+lineWidth)
	for i := 1; len(chunk) < 64<<10; i++ {
		chunk = appendFloodLine(chunk, i)
	}
	chunk = chunk[:64<<10]
	for _, bc := range []struct {
		name                string
		file, console, ring bool
		follower            bool
	}{
		{name: "file", file: true},
		{name: "file+console", file: true, console: true},
		{name: "file+console+ring", file: true, console: true, ring: true},
		{name: "file+console+ring+follower", file: true, console: true, ring: true, follower: true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			opts := Options{}
			if bc.file {
				opts.Dir = dir
			}
			if bc.console {
				opts.Console = console.New(&slowPipe{perWrite: time.Millisecond})
			}
			var ring *Ring
			if bc.ring {
				ring = NewRing("bench", RingOptions{Dir: dir})
				opts.Destinations = []Destination{ring.Destination()}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if bc.follower {
				f := ring.Follow(ctx)
				go func() {
					for {
						if _, _, err := f.Next(); errors.Is(err, context.Canceled) {
							return
						}
					}
				}()
			}
			s, err := Open("bench", opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			w := s.Writer(Stdout)
			b.SetBytes(int64(len(chunk)))
			for b.Loop() {
				w.Write(chunk)
			}
		})
	}
}
