package logs

import (
	"bytes"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// pipeStream is a stream copied from a pipe into a Sink as a container's
// stdout is: io.Copy(writer, pipe) in a goroutine of its own.
type pipeStream struct {
	w    *os.File
	r    *os.File
	sink *Sink
	done chan error
}

func startPipeStream(t testing.TB, opts Options) *pipeStream {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open("c", opts)
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeStream{w: w, r: r, sink: s, done: make(chan error, 1)}
	go func() {
		wr := s.Writer(Stdout)
		_, err := io.Copy(wr, r)
		wr.Close()
		p.done <- err
	}()
	return p
}

// TestReadFromPipe checks that io.Copy from a pipe (which goes through
// the writer's ReadFrom) carries every line, the last one unterminated,
// and ends at the pipe's end.
func TestReadFromPipe(t *testing.T) {
	var got bytes.Buffer
	var mu sync.Mutex
	p := startPipeStream(t, Options{Destinations: []Destination{destFunc(func(ls []Line) {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range ls {
			got.Write(l.Text)
			got.WriteByte('|')
		}
	})}})
	want := strings.Repeat("a", 100000) // longer than a read buffer and DefaultMaxLine
	io.WriteString(p.w, "one\ntwo\n")
	time.Sleep(10 * time.Millisecond) // the reader waits with nothing to read
	io.WriteString(p.w, want+"\nlast")
	p.w.Close()
	if err := <-p.done; err != nil {
		t.Fatalf("io.Copy: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if s := strings.ReplaceAll(got.String(), "|", ""); s != "onetwo"+want+"last" {
		t.Fatalf("got %d bytes %.40q..., want %d", len(s), s, len("onetwo"+want+"last"))
	}
}

// TestQuietPipeHoldsNoBuffer pins what a container whose output is quiet
// costs in the log path: io.Copy's 32 KiB buffer per stream (held for the
// stream's whole life) is gone, and a burst's arena is let go once the
// pipe is quiet.
func TestQuietPipeHoldsNoBuffer(t *testing.T) {
	const streams = 50
	heap := func() uint64 {
		// Two collections: sync.Pool keeps its contents through one.
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	ps := make([]*pipeStream, streams)
	for i := range ps {
		ps[i] = startPipeStream(t, Options{})
		// A burst bigger than the arena kept, then quiet.
		io.WriteString(ps[i].w, strings.Repeat("burst of output\n", 2000))
	}
	time.Sleep(100 * time.Millisecond) // every burst read, every reader waiting
	per := (int64(heap()) - int64(before)) / streams
	for _, p := range ps {
		p.w.Close()
		<-p.done
		p.r.Close()
	}
	t.Logf("%d bytes of heap per quiet stream", per)
	// A Sink, a writer, the pipe's two os.Files and their poll
	// descriptors are a few hundred bytes; a read buffer would be 32 KiB.
	if per > 4<<10 {
		t.Fatalf("%d bytes of heap per quiet stream, want at most 4 KiB", per)
	}
}

// destFunc is a Destination made of a function.
type destFunc func([]Line)

func (f destFunc) Write(ls []Line) error { f(ls); return nil }
func (f destFunc) Close() error          { return nil }
