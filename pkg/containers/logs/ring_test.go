package logs

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeSeq writes numbered lines [from, to) to w, per lines at a time.
func writeSeq(w io.Writer, from, to, per, width int) {
	var b strings.Builder
	for i := from; i < to; i++ {
		b.WriteString(seqLine(i, width) + "\n")
		if (i-from+1)%per == 0 || i == to-1 {
			io.WriteString(w, b.String())
			b.Reset()
		}
	}
}

// seqs returns the line numbers of entries.
func seqs(t testing.TB, es []Entry) []int {
	t.Helper()
	out := make([]int, len(es))
	for i, e := range es {
		out[i] = lineSeq(t, e.Text)
	}
	return out
}

// checkRun checks that es are the numbered lines from, from+1, ... (n of
// them) and that their Seq (when set) is their number + seqOff.
func checkRun(t testing.TB, what string, es []Entry, from, n int, seqOff int) {
	t.Helper()
	if len(es) != n {
		t.Fatalf("%s: %d lines, want %d (%v...)", what, len(es), n, seqs(t, es[:min(5, len(es))]))
	}
	for i, e := range es {
		if got := lineSeq(t, e.Text); got != from+i {
			t.Fatalf("%s: line %d is %d, want %d", what, i, got, from+i)
		}
		if e.Seq != 0 && int(e.Seq) != from+i+seqOff {
			t.Fatalf("%s: line %d has Seq %d, want %d", what, i, e.Seq, from+i+seqOff)
		}
	}
}

func TestRingTailAndBounds(t *testing.T) {
	tests := []struct {
		name     string
		opts     RingOptions
		lines    int
		width    int
		wantKept int
	}{
		{name: "all kept", opts: RingOptions{}, lines: 100, width: 50, wantKept: 100},
		{name: "line bound", opts: RingOptions{MaxLines: 70}, lines: 100, width: 50, wantKept: 70},
		// 100 + 64 = 164 bytes a line: 10 fit in 1700.
		{name: "byte bound", opts: RingOptions{MaxBytes: 1700}, lines: 100, width: 100, wantKept: 10},
		{name: "default byte bound", opts: RingOptions{}, lines: 20000, width: 100, wantKept: DefaultRingBytes / 164},
		{name: "default line bound", opts: RingOptions{MaxBytes: 4 << 20}, lines: 20000, width: 0, wantKept: DefaultRingLines},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRing("c", tt.opts)
			s, _ := Open("c", Options{Destinations: []Destination{r.Destination()}})
			writeSeq(s.Writer(Stdout), 0, tt.lines, 7, tt.width)
			s.Close()
			n, last := r.Len()
			if n != tt.wantKept || last != uint64(tt.lines) {
				t.Fatalf("Len = %d, %d; want %d, %d", n, last, tt.wantKept, tt.lines)
			}
			first := tt.lines - tt.wantKept
			checkRun(t, "Tail(All)", r.Tail(All), first, tt.wantKept, 1)
			checkRun(t, "Tail(5)", r.Tail(5), tt.lines-5, 5, 1)
			checkRun(t, "Tail(0)", r.Tail(0), 0, 0, 1)
			checkRun(t, "Tail(more)", r.Tail(tt.wantKept+10), first, tt.wantKept, 1)
		})
	}
}

func TestRingOutlivesSinks(t *testing.T) {
	rings := NewRings(RingOptions{})
	for run := range 3 {
		s, err := Open("web", Options{Destinations: rings.Destinations("web")})
		if err != nil {
			t.Fatal(err)
		}
		writeSeq(s.Writer(Stdout), run*10, run*10+10, 3, 20)
		s.Close() // closes the Sink's destinations, not the ring
	}
	r, ok := rings.Lookup("web")
	if !ok {
		t.Fatal("no ring")
	}
	checkRun(t, "three runs", r.Tail(All), 0, 30, 1)
	if _, ok := rings.Lookup("db"); ok {
		t.Error("Lookup made a ring")
	}
	f := r.Follow(context.Background())
	rings.Remove("web")
	if _, _, err := f.Next(); !errors.Is(err, ErrClosed) {
		t.Errorf("follower of a removed ring: %v", err)
	}
	if _, ok := rings.Lookup("web"); ok {
		t.Error("removed ring still there")
	}
}

func TestRingSince(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	r := NewRing("c", RingOptions{})
	s, _ := Open("c", Options{Now: clock.Now, Destinations: []Destination{r.Destination()}})
	w := s.Writer(Stdout)
	for i := range 10 { // line i at 1000+i seconds
		writeSeq(w, i, i+1, 1, 10)
		clock.Add(time.Second)
	}
	tests := []struct {
		since     time.Time
		from, num int
	}{
		{time.Time{}, 0, 10},
		{time.Unix(500, 0), 0, 10},
		{time.Unix(1003, 0), 3, 7},
		{time.Unix(1003, 1), 4, 6},
		{time.Unix(1009, 0), 9, 1},
		{time.Unix(2000, 0), 0, 0},
	}
	for _, tt := range tests {
		checkRun(t, "Since "+tt.since.String(), r.Since(tt.since), tt.from, tt.num, 1)
	}
}

// TailFollow under concurrent writes: the tail and what the follower gets
// join without gap or duplicate.
func TestRingTailFollowNoGap(t *testing.T) {
	r := NewRing("c", RingOptions{MaxLines: 500})
	s, _ := Open("c", Options{Destinations: []Destination{r.Destination()}})
	const total = 20000
	done := make(chan struct{})
	go func() {
		defer close(done)
		writeSeq(s.Writer(Stdout), 0, total, 3, 20)
	}()
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		tail, f := r.TailFollow(ctx, 100)
		next := 0
		if len(tail) > 0 {
			ns := seqs(t, tail)
			for i := 1; i < len(ns); i++ {
				if ns[i] != ns[i-1]+1 {
					t.Fatalf("tail not contiguous: %v", ns)
				}
			}
			next = ns[len(ns)-1] + 1
		}
		// Read what follows for a while: it goes on from the tail.
		for got := 0; got < 300 && next < total; {
			lines, missed, err := f.Next()
			if err != nil {
				t.Fatal(err)
			}
			if missed != 0 {
				t.Fatalf("a fast follower missed %d", missed)
			}
			for _, l := range lines {
				if n := lineSeq(t, l.Text); n != next {
					t.Fatalf("follower got %d after the tail ended before %d", n, next)
				}
				next++
				got++
			}
		}
		cancel()
		// Ended by its context: Next says so.
		for {
			_, _, err := f.Next()
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Next after cancel: %v", err)
				}
				break
			}
		}
	}
	<-done
	s.Close()
}

// A follower that does not read loses lines, is told how many, and never
// slows the writer; a follower that reads gets every line.
func TestSlowFollower(t *testing.T) {
	r := NewRing("c", RingOptions{FollowLines: 100})
	s, _ := Open("c", Options{Destinations: []Destination{r.Destination()}})
	ctx := context.Background()
	slow := r.Follow(ctx)
	fast := r.Follow(ctx)
	const total = 50000

	var wg sync.WaitGroup
	wg.Add(1)
	fastErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		next := 0
		for next < total {
			lines, missed, err := fast.Next()
			if err != nil {
				fastErr <- err
				return
			}
			if missed != 0 {
				// The fast reader may fall behind on a loaded
				// machine; it is then told so exactly.
				next += int(missed)
			}
			for _, l := range lines {
				if n := lineSeq(t, l.Text); n != next {
					fastErr <- errors.New("fast follower out of order")
					return
				}
				next++
			}
		}
		fastErr <- nil
	}()

	start := time.Now()
	writeSeq(s.Writer(Stdout), 0, total, 50, 30)
	elapsed := time.Since(start)
	wg.Wait()
	if err := <-fastErr; err != nil {
		t.Fatal(err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("writing took %v with a follower that never reads", elapsed)
	}

	// The slow follower: 100 queued lines, then a count of the others.
	lines, missed, err := slow.Next()
	if err != nil || missed != 0 {
		t.Fatalf("Next = %d lines, missed %d, %v", len(lines), missed, err)
	}
	checkRun(t, "slow follower's queue", lines, 0, 100, 1)
	lines, missed, err = slow.Next()
	if err != nil || len(lines) != 0 || missed != total-100 {
		t.Fatalf("Next = %d lines, missed %d, %v; want only missed %d", len(lines), missed, err, total-100)
	}
	if slow.Missed() != total-100 {
		t.Errorf("Missed = %d", slow.Missed())
	}
	// Lines after the gap come with the gap's count.
	writeSeq(s.Writer(Stdout), total, total+150, 150, 30)
	lines, missed, _ = slow.Next()
	if missed != 0 || len(lines) != 100 {
		t.Fatalf("Next = %d lines, missed %d", len(lines), missed)
	}
	writeSeq(s.Writer(Stdout), total+150, total+151, 1, 30)
	lines, missed, _ = slow.Next()
	if missed != 50 || len(lines) != 1 || lineSeq(t, lines[0].Text) != total+150 {
		t.Fatalf("Next = %v, missed %d; want line %d after 50 missed", seqs(t, lines), missed, total+150)
	}
	slow.Stop()
	if _, _, err := slow.Next(); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after Stop: %v", err)
	}
	s.Close()
}

func TestFollowerByteBound(t *testing.T) {
	r := NewRing("c", RingOptions{FollowBytes: 10 * (1000 + EntryOverhead)})
	f := r.Follow(context.Background())
	s, _ := Open("c", Options{Destinations: []Destination{r.Destination()}})
	writeSeq(s.Writer(Stdout), 0, 30, 30, 1000)
	s.Close()
	lines, _, _ := f.Next()
	checkRun(t, "queue", lines, 0, 10, 1)
	if _, missed, _ := f.Next(); missed != 20 {
		t.Errorf("missed %d, want 20", missed)
	}
}

func TestFollowAfterClose(t *testing.T) {
	r := NewRing("c", RingOptions{})
	r.Write([]Line{{Stream: Stdout, Text: []byte("line 000000001 x")}})
	r.Close()
	if err := r.Write([]Line{{Stream: Stdout, Text: []byte("late")}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.Len(); n != 1 {
		t.Errorf("closed ring took a line: %d", n)
	}
	tail, f := r.TailFollow(context.Background(), All)
	if len(tail) != 1 {
		t.Errorf("tail of a closed ring: %d lines", len(tail))
	}
	if _, _, err := f.Next(); !errors.Is(err, ErrClosed) {
		t.Errorf("Next = %v", err)
	}
}

// A ring's lines keep their text when the writer reuses its buffers, and
// the text readers hold is never overwritten.
func TestRingTextIsOwned(t *testing.T) {
	r := NewRing("c", RingOptions{MaxLines: 3})
	buf := []byte("aaaa")
	r.Write([]Line{{Text: buf}})
	held := r.Tail(1)
	copy(buf, "bbbb")
	for range 100 {
		r.Write([]Line{{Text: []byte("cccc")}, {Text: []byte(strings.Repeat("d", slabSize))}})
	}
	if string(held[0].Text) != "aaaa" {
		t.Fatalf("held text became %q", held[0].Text)
	}
}

// TestRingGrowsWithItsLines checks that a ring holds memory in proportion
// to what it keeps, not to its bounds: one short line costs a small buffer
// and a small block of text, and both grow (by doubling, up to the
// bounds) as lines come.
func TestRingGrowsWithItsLines(t *testing.T) {
	for _, tc := range []struct {
		lines, width       int
		maxBuf, maxSlab    int // capacities at most
		minBuf, minSlabCap int // and at least
	}{
		{lines: 0, width: 20, maxBuf: 0, maxSlab: 0},
		{lines: 1, width: 20, minBuf: 1, maxBuf: minRingLines, minSlabCap: 20, maxSlab: minSlabSize},
		{lines: 20, width: 20, minBuf: 20, maxBuf: 2 * minRingLines, minSlabCap: 20, maxSlab: 2 * minSlabSize},
		{lines: 2000, width: 100, minBuf: 2000, maxBuf: 2048, minSlabCap: slabSize, maxSlab: slabSize},
	} {
		r := NewRing("c", RingOptions{})
		s, err := Open("c", Options{Destinations: []Destination{r.Destination()}})
		if err != nil {
			t.Fatal(err)
		}
		writeSeq(s.Writer(Stdout), 1, tc.lines+1, 1, tc.width)
		r.mu.Lock()
		buf, slab := len(r.buf), cap(r.slab)
		r.mu.Unlock()
		if buf < tc.minBuf || buf > tc.maxBuf || slab < tc.minSlabCap || slab > tc.maxSlab {
			t.Errorf("%d lines of %d bytes: buffer of %d entries (want %d..%d), text block of %d bytes (want %d..%d)",
				tc.lines, tc.width, buf, tc.minBuf, tc.maxBuf, slab, tc.minSlabCap, tc.maxSlab)
		}
		if n, _ := r.Len(); n != tc.lines {
			t.Errorf("%d lines written, %d kept", tc.lines, n)
		}
	}
}

func TestNextSlabSize(t *testing.T) {
	for _, tc := range []struct{ last, n, want int }{
		{0, 10, minSlabSize},
		{minSlabSize, 10, 2 * minSlabSize},
		{minSlabSize, 3000, 3000},
		{slabSize, 10, slabSize},
		{slabSize / 2, slabSize / 4, slabSize},
	} {
		if got := nextSlabSize(tc.last, tc.n); got != tc.want {
			t.Errorf("nextSlabSize(%d, %d) = %d, want %d", tc.last, tc.n, got, tc.want)
		}
	}
}
