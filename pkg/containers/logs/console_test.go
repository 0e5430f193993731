package logs

import (
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/photon-init/photon-init/internal/syncbuf"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestConsoleRateLimit(t *testing.T) {
	type step struct {
		advance time.Duration // before the write
		write   string
	}
	tests := []struct {
		name  string
		limit ConsoleLimit
		dir   bool
		steps []step
		want  string // console after Close
	}{
		{
			name:  "burst then dropped, reported at close with the file",
			limit: ConsoleLimit{LinesPerSecond: 1, Burst: 2, ReportEvery: time.Hour},
			dir:   true,
			steps: []step{{write: "a\nb\nc\nd\n"}},
			want:  "[w] a\n[w] b\n[w] 2 lines not shown; see DIR/w.log\n",
		},
		{
			name:  "tokens come back with time",
			limit: ConsoleLimit{LinesPerSecond: 2, Burst: 1, ReportEvery: time.Hour},
			steps: []step{{write: "a\nb\n"}, {advance: 500 * time.Millisecond, write: "c\nd\n"}, {advance: time.Second, write: "e\nf\ng\n"}},
			want:  "[w] a\n[w] c\n[w] e\n[w] 4 lines not shown\n",
		},
		{
			name:  "pieces of a dropped line are dropped",
			limit: ConsoleLimit{LinesPerSecond: 1, Burst: 1, ReportEvery: time.Hour},
			steps: []step{{write: "ok\n"}, {advance: 100 * time.Millisecond, write: "0123456789ab\n"}, {advance: 10 * time.Second, write: "next\n"}},
			want:  "[w] ok\n[w] next\n[w] 2 lines not shown\n",
		},
		{
			name:  "pieces of a shown line are lines",
			limit: ConsoleLimit{LinesPerSecond: 1, Burst: 2},
			steps: []step{{write: "0123456789ab\n"}},
			want:  "[w] 01234567\n[w]+ 89ab\n",
		},
		{
			name:  "unlimited",
			limit: ConsoleLimit{LinesPerSecond: -1, Burst: 1},
			steps: []step{{write: strings.Repeat("x\n", 1000)}},
			want:  strings.Repeat("[w] x\n", 1000),
		},
		{
			name:  "defaults: a burst of 200",
			steps: []step{{write: strings.Repeat("x\n", 300)}},
			want:  strings.Repeat("[w] x\n", 200) + "[w] 100 lines not shown\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1000, 0)}
			con := &syncbuf.Buffer{}
			opts := Options{Console: con, ConsoleLimit: tt.limit, MaxLine: 8, Now: clock.Now}
			if tt.dir {
				opts.Dir = t.TempDir()
			}
			s, err := Open("w", opts)
			if err != nil {
				t.Fatal(err)
			}
			w := s.Writer(Stdout)
			for _, st := range tt.steps {
				clock.Add(st.advance)
				io.WriteString(w, st.write)
			}
			w.Close()
			s.Close()
			want := strings.ReplaceAll(tt.want, "DIR", opts.Dir)
			if got := con.String(); got != want {
				t.Errorf("console:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// While lines are dropped, their count is shown every ReportEvery, also
// when the container has gone quiet.
func TestConsoleReportsWhileFlooding(t *testing.T) {
	con := &syncbuf.Buffer{}
	s, err := Open("web", Options{Console: con, ConsoleLimit: ConsoleLimit{LinesPerSecond: 1, Burst: 1, ReportEvery: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := s.Writer(Stdout)
	io.WriteString(w, "shown\n"+strings.Repeat("flood\n", 1234))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(con.String(), "[web] 1234 lines not shown\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no report; console:\n%s", con.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A second flood gets a report of its own, not the first count again.
	io.WriteString(w, strings.Repeat("flood\n", 10))
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(con.String(), "[web] 10 lines not shown\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no second report; console:\n%s", con.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, want := con.String(), "[web] shown\n[web] 1234 lines not shown\n[web] 10 lines not shown\n"; got != want {
		t.Errorf("console:\n%s\nwant\n%s", got, want)
	}
}
