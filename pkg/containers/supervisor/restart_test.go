package supervisor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

func TestBackoffSequenceAndCap(t *testing.T) {
	s, rt, clk := newTest(t, Options{})
	s.Start(context.Background(), []*manifest.Container{
		with(ctr("crash", "img", []string{"exit:1"}, nil), func(m *manifest.Container) { m.Restart = "always" }),
	}, nil)
	want := []time.Duration{
		100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, 12800 * time.Millisecond,
		25600 * time.Millisecond, 30 * time.Second, 30 * time.Second,
	}
	for i, d := range want {
		st := waitFor(t, s, "crash", fmt.Sprintf("backoff %d", i), func(st Status) bool {
			return st.State == StateBackoff && st.Restarts == i
		})
		if got := st.NextStart.Sub(clk.Now()); got != d {
			t.Fatalf("backoff %d: next start in %v, want %v", i, got, d)
		}
		if reason := fmt.Sprintf("backing off, next start in %s, last exit 1", d); st.Reason != reason {
			t.Fatalf("backoff %d: reason %q, want %q", i, st.Reason, reason)
		}
		if n := rt.count("start crash"); n != i+1 {
			t.Fatalf("backoff %d: %d starts, want %d", i, n, i+1)
		}
		clk.Advance(d)
	}
}

func TestBackoffResetsAfterStableRun(t *testing.T) {
	s, rt, clk := newTest(t, Options{StableRun: 10 * time.Second})
	s.Start(context.Background(), []*manifest.Container{
		with(ctr("web", "img", nil, nil), func(m *manifest.Container) { m.Restart = "always" }),
	}, nil)
	crash := func(restarts int, ran, wantDelay time.Duration) {
		t.Helper()
		waitFor(t, s, "web", "running", func(st Status) bool { return st.State == StateRunning && st.Restarts == restarts })
		clk.Advance(ran)
		rt.latest(t, "web").exit(Exit{Code: 2})
		st := waitState(t, s, "web", StateBackoff)
		if got := st.NextStart.Sub(clk.Now()); got != wantDelay {
			t.Fatalf("after a run of %v: next start in %v, want %v", ran, got, wantDelay)
		}
		clk.Advance(wantDelay)
	}
	crash(0, time.Second, 100*time.Millisecond)
	crash(1, time.Second, 200*time.Millisecond)
	crash(2, 9*time.Second, 400*time.Millisecond)
	crash(3, 10*time.Second, 100*time.Millisecond) // stable: from the beginning
	crash(4, 0, 200*time.Millisecond)
}

func TestRestartPolicies(t *testing.T) {
	tests := []struct {
		restart string
		command string
		state   State
		reason  string
	}{
		{"", "exit:0", StateExited, "exit 0"},
		{"no", "exit:0", StateExited, "exit 0"},
		{"no", "exit:1", StateExited, "exit 1"},
		{"no", "create-fails", StateFailed, "create: boom"},
		{"always", "exit:0", StateBackoff, "backing off, next start in 100ms, last exit 0"},
		{"always", "exit:1", StateBackoff, "backing off, next start in 100ms, last exit 1"},
		{"always", "create-fails", StateBackoff, "backing off, next start in 100ms, last error: create: boom"},
		{"unless-stopped", "exit:0", StateBackoff, "backing off, next start in 100ms, last exit 0"},
		{"unless-stopped", "exit:137", StateBackoff, "backing off, next start in 100ms, last exit 137"},
		{"on-failure", "exit:0", StateExited, "exit 0"},
		{"on-failure", "exit:1", StateBackoff, "backing off, next start in 100ms, last exit 1"},
		{"on-failure:3", "exit:0", StateExited, "exit 0"},
		{"on-failure:3", "create-fails", StateBackoff, "backing off, next start in 100ms, last error: create: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.restart+"/"+tt.command, func(t *testing.T) {
			s, _, _ := newTest(t, Options{})
			s.Start(context.Background(), []*manifest.Container{
				with(ctr("c", "img", []string{tt.command}, nil), func(m *manifest.Container) { m.Restart = tt.restart }),
			}, nil)
			waitReason(t, s, "c", tt.state, tt.reason)
		})
	}
}

func TestOnFailureMaxRetries(t *testing.T) {
	s, rt, clk := newTest(t, Options{})
	s.Start(context.Background(), []*manifest.Container{
		with(ctr("c", "img", []string{"exit:1"}, nil), func(m *manifest.Container) { m.Restart = "on-failure:2" }),
	}, nil)
	for i, d := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond} {
		waitFor(t, s, "c", "backoff", func(st Status) bool { return st.State == StateBackoff && st.Restarts == i })
		clk.Advance(d)
	}
	st := waitReason(t, s, "c", StateFailed, "exit 1; gave up after 2 restarts (on-failure:2)")
	if st.Restarts != 2 || rt.count("start c") != 3 {
		t.Errorf("%d restarts, %d starts; want 2 and 3", st.Restarts, rt.count("start c"))
	}
}

func TestStopDuringBackoff(t *testing.T) {
	s, rt, _ := newTest(t, Options{})
	s.Start(context.Background(), []*manifest.Container{
		with(ctr("crash", "img", []string{"exit:1"}, nil), func(m *manifest.Container) { m.Restart = "always" }),
		with(ctr("other", "img", []string{"exit:1"}, nil), func(m *manifest.Container) { m.Restart = "always" }),
	}, nil)
	waitState(t, s, "crash", StateBackoff)
	waitState(t, s, "other", StateBackoff)

	// One container, on request: the backoff ends at once, the clock
	// standing still.
	if err := s.StopContainer(context.Background(), "crash"); err != nil {
		t.Fatal(err)
	}
	if st := status(t, s, "crash"); st.State != StateStopped || st.Reason != "stop requested, while backing off" {
		t.Fatalf("after StopContainer: %s (%s)", st.State, st.Reason)
	}
	if err := s.StartContainer("crash"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "crash", "backoff again", func(st Status) bool { return st.State == StateBackoff && rt.count("start crash") == 2 })

	// Shutdown.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"crash", "other"} {
		if st := status(t, s, name); st.State != StateStopped || st.Reason != "shutdown, while backing off" {
			t.Errorf("%s after Stop: %s (%s)", name, st.State, st.Reason)
		}
	}
	if err := s.StartContainer("crash"); err == nil {
		t.Errorf("StartContainer after Stop worked")
	}
}

func TestRestarterDecide(t *testing.T) {
	opts := Options{RestartDelay: time.Second, MaxRestartDelay: 4 * time.Second, StableRun: time.Minute}
	exit := func(code int) *Exit { return &Exit{Code: code} }
	type step struct {
		res     runResult
		restart bool
		delay   time.Duration
		reason  string
	}
	tests := []struct {
		policy string
		steps  []step
	}{
		{"on-failure:1", []step{
			{runResult{exit: exit(1)}, true, time.Second, "last exit 1"},
			{runResult{exit: exit(1)}, false, 0, "exit 1; gave up after 1 restarts (on-failure:1)"},
		}},
		{"on-failure:1", []step{
			{runResult{exit: exit(1)}, true, time.Second, "last exit 1"},
			{runResult{exit: exit(1), ran: time.Minute}, true, time.Second, "last exit 1"}, // stable: count reset
		}},
		{"on-failure", []step{
			{runResult{exit: exit(0), cause: "watchdog timeout"}, true, time.Second, "last watchdog timeout, exit 0"},
			{runResult{exit: &Exit{Code: 143, Signal: "SIGTERM"}, cause: "unhealthy (x)"}, true, 2 * time.Second, "last unhealthy (x), exit 143 (SIGTERM)"},
			{runResult{exit: exit(3)}, true, 4 * time.Second, "last exit 3"},
			{runResult{exit: exit(3)}, true, 4 * time.Second, "last exit 3"}, // capped
			{runResult{exit: exit(0)}, false, 0, "exit 0"},
		}},
		{"no", []step{
			{runResult{exit: &Exit{Code: 137, Signal: "SIGKILL"}, cause: "watchdog timeout (no WATCHDOG=1 for 5s)"}, false, 0, "watchdog timeout (no WATCHDOG=1 for 5s), exit 137 (SIGKILL)"},
		}},
	}
	for _, tt := range tests {
		p := newRestarter(tt.policy, New(opts).opts)
		for i, st := range tt.steps {
			d := p.decide(st.res)
			if d.restart != st.restart || d.delay != st.delay || d.reason != st.reason {
				t.Errorf("%s step %d: %+v, want restart %v delay %v reason %q", tt.policy, i, d, st.restart, st.delay, st.reason)
			}
		}
	}
}

func TestRestartsFailure(t *testing.T) {
	opts := New(Options{}).opts
	tests := []struct {
		policy string
		fails  int
		ran    time.Duration
		want   bool
	}{
		{"no", 0, 0, false},
		{"always", 5, 0, true},
		{"unless-stopped", 5, 0, true},
		{"on-failure", 100, 0, true},
		{"on-failure:2", 1, 0, true},
		{"on-failure:2", 2, 0, false},
		{"on-failure:2", 2, time.Minute, true},
	}
	for _, tt := range tests {
		p := newRestarter(tt.policy, opts)
		p.fails = tt.fails
		if got := p.restartsFailure(tt.ran); got != tt.want {
			t.Errorf("%s with %d failures, ran %v: %v, want %v", tt.policy, tt.fails, tt.ran, got, tt.want)
		}
	}
}
