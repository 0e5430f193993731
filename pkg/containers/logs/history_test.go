package logs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// collect runs Stream and returns what it gave.
func collect(t testing.TB, r *Ring, q Query) []Entry {
	t.Helper()
	var out []Entry
	err := r.Stream(context.Background(), q, func(lines []Entry, missed uint64) error {
		if missed != 0 {
			t.Errorf("stored lines with missed %d", missed)
		}
		out = append(out, lines...)
		return nil
	})
	if err != nil {
		t.Fatalf("Stream(%+v): %v", q, err)
	}
	return out
}

func TestTailFiles(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open("c", Options{Dir: dir, Rotation: Rotation{MaxSize: 4096, MaxFiles: 4}, Now: fixedClock})
	writeSeq(s.Writer(Stdout), 0, 100, 9, 100) // 29 a file: 0-28 | 29-57 | 58-86 | 87-99
	s.Close()
	for _, tt := range []struct{ n, from, num int }{
		{All, 0, 100}, {0, 0, 0}, {1, 99, 1}, {13, 87, 13}, {14, 86, 14}, {42, 58, 42}, {100, 0, 100}, {500, 0, 100},
	} {
		got, err := TailFiles(dir, "c", tt.n)
		if err != nil {
			t.Fatal(err)
		}
		checkRun(t, "TailFiles", got, tt.from, tt.num, 0)
	}
	if got, err := TailFiles(dir, "none", 10); err != nil || len(got) != 0 {
		t.Errorf("no files: %d lines, %v", len(got), err)
	}
	// Records keep their stream, time and pieces.
	s, _ = Open("p", Options{Dir: dir, MaxLine: 4, Now: fixedClock})
	s.Writer(Stderr).Write([]byte("abcdefg\n"))
	s.Close()
	got, _ := TailFiles(dir, "p", All)
	if len(got) != 2 || got[0].Stream != Stderr || !got[0].Partial || got[0].Continued || got[1].Partial || !got[1].Continued ||
		!got[1].Time.Equal(fixedClock()) || string(got[0].Text)+string(got[1].Text) != "abcdefg" {
		t.Errorf("pieces: %+v", got)
	}
}

// Stream gives the lines the ring no longer holds from the files, joined
// exactly where the ring begins.
func TestStreamJoinsFilesAndRing(t *testing.T) {
	dir := t.TempDir()
	rings := NewRings(RingOptions{Dir: dir, MaxLines: 50})
	s, _ := Open("c", Options{Dir: dir, Rotation: Rotation{MaxSize: 4096, MaxFiles: 100}, Destinations: rings.Destinations("c")})
	writeSeq(s.Writer(Stdout), 0, 1000, 7, 100)
	s.Close()
	r := rings.Get("c")
	if n, _ := r.Len(); n != 50 {
		t.Fatalf("ring holds %d", n)
	}
	for _, tt := range []struct{ tail, from, num int }{
		{All, 0, 1000}, {0, 0, 0}, {10, 990, 10}, {50, 950, 50}, {51, 949, 51}, {1000, 0, 1000}, {2000, 0, 1000}, {333, 667, 333},
	} {
		got := collect(t, r, Query{Tail: tt.tail})
		checkRun(t, "Stream", got, tt.from, tt.num, 1)
		// The ring's part has Seq, the files' has none.
		for i, e := range got {
			if fromRing := lineSeq(t, e.Text) >= 950; fromRing != (e.Seq != 0) {
				t.Fatalf("tail %d: line %d (%d) Seq %d", tt.tail, i, lineSeq(t, e.Text), e.Seq)
			}
		}
	}
}

func TestStreamSince(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Unix(1000, 0)}
	r := NewRing("c", RingOptions{Dir: dir, MaxLines: 20})
	s, _ := Open("c", Options{Dir: dir, Now: clock.Now, Rotation: Rotation{MaxSize: 4096, MaxFiles: 100}, Destinations: []Destination{r.Destination()}})
	w := s.Writer(Stdout)
	for i := range 200 { // line i at 1000 + i/2 seconds
		writeSeq(w, i, i+1, 1, 100)
		if i%2 == 1 {
			clock.Add(time.Second)
		}
	}
	s.Close()
	for _, tt := range []struct {
		since           int64
		tail, from, num int
	}{
		{0, All, 0, 200},
		{1000, All, 0, 200},
		{1001, All, 2, 198},
		{1050, All, 100, 100}, // in the files
		{1095, All, 190, 10},  // in the ring
		{1090, All, 180, 20},  // exactly the ring
		{1089, All, 178, 22},  // just before the ring
		{1050, 30, 170, 30},   // the last 30 of those
		{1050, 500, 100, 100},
		{1200, All, 0, 0},
	} {
		q := Query{Tail: tt.tail}
		if tt.since != 0 {
			q.Since = time.Unix(tt.since, 0)
		}
		checkRun(t, "Stream since", collect(t, r, q), tt.from, tt.num, 1)
	}
}

// After a restart of photon-init the ring is empty: Stream reads the
// files of the previous boot and then follows without doubling a line.
func TestStreamEmptyRingReadsFiles(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open("c", Options{Dir: dir, Rotation: Rotation{MaxSize: 4096, MaxFiles: 100}})
	writeSeq(s.Writer(Stdout), 0, 300, 7, 100)
	s.Close()

	r := NewRing("c", RingOptions{Dir: dir})
	checkRun(t, "tail 100", collect(t, r, Query{Tail: 100}), 200, 100, 0)
	checkRun(t, "all", collect(t, r, Query{Tail: All}), 0, 300, 0)

	// Follow: lines written while Stream runs come once.
	s, _ = Open("c", Options{Dir: dir, Rotation: Rotation{MaxSize: 4096, MaxFiles: 100}, Destinations: []Destination{r.Destination()}})
	ctx, cancel := context.WithCancel(context.Background())
	var got []Entry
	errc := make(chan error, 1)
	go func() {
		errc <- r.Stream(ctx, Query{Tail: 10, Follow: true}, func(lines []Entry, missed uint64) error {
			got = append(got, lines...)
			if len(got) > 0 && lineSeq(t, got[len(got)-1].Text) == 499 {
				cancel()
			}
			return nil
		})
	}()
	writeSeq(s.Writer(Stdout), 300, 500, 3, 100)
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Stream = %v", err)
	}
	s.Close()
	// Where Stream started relative to the writer varies; the lines it
	// gave are contiguous from the tail of what was there to the last.
	ns := seqs(t, got)
	if ns[0] < 290 {
		t.Fatalf("tail started at %d", ns[0])
	}
	checkRun(t, "tail and follow", got, ns[0], 500-ns[0], -299) // the ring numbers line 300 as 1
}

// When the ring holds more than the files (they were rotated away), Stream
// gives the ring.
func TestStreamFilesRotatedAway(t *testing.T) {
	dir := t.TempDir()
	r := NewRing("c", RingOptions{Dir: dir})
	s, _ := Open("c", Options{Dir: dir, Rotation: Rotation{MaxSize: 4096, MaxFiles: 1}, Destinations: []Destination{r.Destination()}})
	writeSeq(s.Writer(Stdout), 0, 500, 7, 100)
	s.Close()
	checkRun(t, "all", collect(t, r, Query{Tail: All}), 0, 500, 1)
	// A ring whose lines never reached a file (no Dir in the Sink).
	r2 := NewRing("d", RingOptions{Dir: dir, MaxLines: 5})
	s, _ = Open("d", Options{Destinations: []Destination{r2.Destination()}})
	writeSeq(s.Writer(Stdout), 0, 20, 7, 10)
	s.Close()
	checkRun(t, "no file", collect(t, r2, Query{Tail: All}), 15, 5, 1)
}

// Readers open the files by name while a writer rotates them as fast as it
// can: every read is contiguous, and a tail that reaches into the files
// joins the ring exactly.
func TestStreamWhileRotating(t *testing.T) {
	dir := t.TempDir()
	r := NewRing("c", RingOptions{Dir: dir, MaxLines: 100})
	s, _ := Open("c", Options{Dir: dir, Rotation: Rotation{MaxSize: 8192, MaxFiles: 5}, Destinations: []Destination{r.Destination()}})
	const total = 60000
	done := make(chan struct{})
	go func() {
		defer close(done)
		writeSeq(s.Writer(Stdout), 0, total, 5, 60)
	}()
	var wg sync.WaitGroup
	reads := make([]int, 3)
	for k := range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				var got []Entry
				var err error
				if k == 0 {
					got, err = TailFiles(dir, "c", 150)
				} else {
					got, err = nil, r.Stream(context.Background(), Query{Tail: 250}, func(l []Entry, _ uint64) error {
						got = append(got, l...)
						return nil
					})
				}
				if err != nil {
					t.Error(err)
					return
				}
				ns := seqs(t, got)
				for i := 1; i < len(ns); i++ {
					if ns[i] != ns[i-1]+1 {
						t.Errorf("reader %d: %d after %d", k, ns[i], ns[i-1])
						return
					}
				}
				if len(ns) > 0 && ns[0] > 1000 && len(ns) != map[int]int{0: 150, 1: 250, 2: 250}[k] {
					t.Errorf("reader %d: %d lines", k, len(ns))
					return
				}
				reads[k]++
			}
		}()
	}
	<-done
	wg.Wait()
	s.Close()
	t.Logf("reads while rotating: %v", reads)
	if n := checkFiles(t, dir, "c", -1, 8192); n < 5*8192/100 {
		t.Errorf("the files hold %d lines", n)
	}
}

func TestOpenHistoryMidRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	for _, n := range []string{"c.log", "c.log.1", "c.log.3"} { // .2 missing: .1 is being moved
		os.WriteFile(filepath.Join(dir, n), []byte("x\n"), 0o640)
	}
	go func() {
		time.Sleep(5 * time.Millisecond)
		os.Rename(path+".1", path+".2")
		os.Rename(path, path+".1")
		os.WriteFile(path, []byte("y\n"), 0o640)
	}()
	h, err := openHistory(dir, "c")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if len(h.files) != 4 {
		t.Fatalf("%d files after the rotation finished", len(h.files))
	}
}

// A rotation that failed half-way for good (NAME.log gone, NAME.log.2
// there, NAME.log.1 missing) does not make readers fail.
func TestOpenHistoryBrokenRotation(t *testing.T) {
	dir := t.TempDir()
	rec := string(AppendRecord(nil, Line{Stream: Stdout, Time: fixedClock(), Text: []byte(seqLine(7, 20))}))
	os.WriteFile(filepath.Join(dir, "c.log.2"), []byte(rec), 0o640)
	start := time.Now()
	got, err := TailFiles(dir, "c", All)
	if err != nil || len(got) != 0 {
		t.Fatalf("TailFiles = %d lines, %v", len(got), err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
	os.WriteFile(filepath.Join(dir, "c.log"), []byte(rec), 0o640)
	got, err = TailFiles(dir, "c", All)
	if err != nil || len(got) != 1 {
		t.Fatalf("TailFiles = %d lines, %v; want the newest file's line", len(got), err)
	}
}
