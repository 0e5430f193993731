package supervisor

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// dep is a required dependency with a condition.
func dep(cond string) manifest.Dependency {
	return manifest.Dependency{Condition: cond, Required: true}
}

// healthy gives m a health check probing every second.
func healthy(m *manifest.Container) {
	m.Healthcheck = &manifest.Healthcheck{Test: []string{"CMD", "check"}, Interval: time.Second, Retries: 2}
}

func TestDependencyConditions(t *testing.T) {
	t.Run("service_healthy", func(t *testing.T) {
		s, rt, clk := newTest(t, Options{})
		s.Start(context.Background(), []*manifest.Container{
			with(ctr("db", "img", nil, nil), healthy),
			ctr("app", "img", nil, map[string]manifest.Dependency{"db": dep(manifest.ConditionHealthy)}),
		}, nil)
		waitReason(t, s, "app", StateWaiting, "waiting for db (service_healthy): db is running, starting")
		rt.setProbe("db", 1, "not yet", nil)
		clk.Advance(time.Second)
		st := waitFor(t, s, "db", "a probe", func(st Status) bool { return st.Health != nil && st.Health.LastProbe.Equal(clk.Now()) })
		if st.Health.Status != HealthStarting || st.Health.FailingStreak != 1 || st.Health.LastOutput != "not yet" {
			t.Fatalf("db health after one failed probe: %+v", st.Health)
		}
		if st := status(t, s, "app"); st.State != StateWaiting {
			t.Fatalf("app did not wait for db to be healthy: %s (%s)", st.State, st.Reason)
		}
		rt.setProbe("db", 0, "ok", nil)
		clk.Advance(time.Second)
		waitState(t, s, "app", StateRunning)
		if st := status(t, s, "db"); st.Health.Status != HealthHealthy || st.Reason != "healthy" {
			t.Errorf("db: %s, health %+v", st.Reason, st.Health)
		}
	})

	t.Run("service_ready", func(t *testing.T) {
		s, rt, _ := newTest(t, Options{})
		s.Start(context.Background(), []*manifest.Container{
			ctr("db", "img", nil, nil),
			ctr("app", "img", nil, map[string]manifest.Dependency{"db": dep(manifest.ConditionReady)}),
		}, nil)
		waitReason(t, s, "app", StateWaiting, "waiting for db (service_ready): db is running, not ready yet")
		rt.latest(t, "db").notes <- Notification{Status: "loading 50%"}
		waitFor(t, s, "db", "a status line", func(st Status) bool { return st.NotifyStatus == "loading 50%" })
		if st := status(t, s, "app"); st.State != StateWaiting {
			t.Fatalf("app did not wait for READY=1: %s", st.State)
		}
		rt.latest(t, "db").notes <- Notification{Ready: true, Status: "serving"}
		waitState(t, s, "app", StateRunning)
		st := status(t, s, "db")
		if !st.Ready || st.NotifyStatus != "serving" || st.Reason != "ready (READY=1)" {
			t.Errorf("db: ready %v, status %q, reason %q", st.Ready, st.NotifyStatus, st.Reason)
		}
	})

	t.Run("service_completed_successfully", func(t *testing.T) {
		// LinuxKit's onboot: one-shot containers that must succeed
		// before the services start.
		s, rt, _ := newTest(t, Options{})
		oneshot := func(name, cmd string) *manifest.Container {
			return with(ctr(name, "img", []string{cmd}, nil), func(m *manifest.Container) { m.Restart = "no" })
		}
		s.Start(context.Background(), []*manifest.Container{
			oneshot("format-disk", "exit:0"),
			oneshot("mount-data", "exit:0"),
			oneshot("bad-init", "exit:2"),
			ctr("web", "img", nil, map[string]manifest.Dependency{
				"format-disk": dep(manifest.ConditionCompleted), "mount-data": dep(manifest.ConditionCompleted),
			}),
			ctr("web2", "img", nil, map[string]manifest.Dependency{"bad-init": dep(manifest.ConditionCompleted)}),
		}, nil)
		waitState(t, s, "web", StateRunning)
		waitReason(t, s, "web2", StateFailed, "dependency bad-init: did not complete successfully (exit 2)")
		ev := rt.Events()
		if slices.Index(ev, "start web") < slices.Index(ev, "start format-disk") || slices.Index(ev, "start web") < slices.Index(ev, "start mount-data") {
			t.Errorf("web started before its one-shot containers: %v", ev)
		}
		if st := status(t, s, "format-disk"); st.State != StateExited || rt.count("start format-disk") != 1 {
			t.Errorf("format-disk: %s, %d starts", st.State, rt.count("start format-disk"))
		}
	})

	t.Run("failed for good", func(t *testing.T) {
		s, _, _ := newTest(t, Options{})
		s.Start(context.Background(), []*manifest.Container{
			ctr("nohealth", "img", nil, nil),
			ctr("noimage", "missing", nil, nil),
			ctr("a", "img", nil, map[string]manifest.Dependency{"nohealth": dep(manifest.ConditionHealthy)}),
			ctr("b", "img", nil, map[string]manifest.Dependency{"noimage": dep(manifest.ConditionStarted)}),
			ctr("c", "img", nil, map[string]manifest.Dependency{"typo": dep(manifest.ConditionStarted)}),
			ctr("d", "img", nil, map[string]manifest.Dependency{"ghost": dep(manifest.ConditionStarted)}),
			ctr("e", "img", nil, map[string]manifest.Dependency{"quick": dep(manifest.ConditionReady)}),
			ctr("quick", "img", []string{"exit:0"}, nil),
		}, []Invalid{{Name: "typo", File: "typo.yaml", Err: errors.New("typo.yaml:1: field imagee: unknown field")}})
		for name, reason := range map[string]string{
			"a": "dependency nohealth: has no health check (service_healthy needs one)",
			"b": "dependency noimage: failed: image missing: no such image",
			"c": "dependency typo: invalid manifest: typo.yaml:1: field imagee: unknown field",
			"d": "dependency ghost: no such container",
			"e": "dependency quick: exited (exit 0) without sending READY=1",
		} {
			waitReason(t, s, name, StateFailed, reason)
		}
	})

	t.Run("optional dependency that fails", func(t *testing.T) {
		s, _, _ := newTest(t, Options{})
		s.Start(context.Background(), []*manifest.Container{
			ctr("noimage", "missing", nil, nil),
			ctr("app", "img", nil, map[string]manifest.Dependency{
				"noimage": {Condition: manifest.ConditionStarted, Required: false},
				"ghost":   {Condition: manifest.ConditionHealthy, Required: false},
			}),
		}, nil)
		waitState(t, s, "app", StateRunning)
	})

	t.Run("dependency backing off", func(t *testing.T) {
		s, _, clk := newTest(t, Options{})
		s.Start(context.Background(), []*manifest.Container{
			with(ctr("db", "img", []string{"create-fails"}, nil), func(m *manifest.Container) { m.Restart = "always" }),
			ctr("app", "img", nil, map[string]manifest.Dependency{"db": dep(manifest.ConditionStarted)}),
		}, nil)
		waitReason(t, s, "app", StateWaiting, "waiting for db (service_started): db is backing off, next start in 100ms, last error: create: boom")
		clk.Advance(100 * time.Millisecond)
		waitReason(t, s, "app", StateWaiting, "waiting for db (service_started): db is backing off, next start in 200ms, last error: create: boom")
	})
}

func TestDependencyRestart(t *testing.T) {
	s, rt, clk := newTest(t, Options{})
	s.Start(context.Background(), []*manifest.Container{
		with(ctr("db", "img", nil, nil), func(m *manifest.Container) { m.Restart = "always" }),
		ctr("app", "img", nil, map[string]manifest.Dependency{"db": {Condition: manifest.ConditionStarted, Required: true, Restart: true}}),
		ctr("other", "img", nil, map[string]manifest.Dependency{"db": dep(manifest.ConditionStarted)}),
	}, nil)
	waitState(t, s, "app", StateRunning)
	waitState(t, s, "other", StateRunning)
	rt.latest(t, "db").exit(Exit{Code: 1})
	waitReason(t, s, "app", StateWaiting, "waiting for db (service_started): db is backing off, next start in 100ms, last exit 1")
	clk.Advance(100 * time.Millisecond)
	st := waitFor(t, s, "app", "running again", func(st Status) bool { return st.State == StateRunning && rt.count("start app") == 2 })
	if st.Restarts != 1 {
		t.Errorf("app restarts %d, want 1", st.Restarts)
	}
	ev := rt.Events()
	if slices.Index(ev, "stop app") < 0 || slices.Index(ev, "start db") > slices.Index(ev, "stop app") {
		t.Errorf("app was not stopped when db restarted: %v", ev)
	}
	if rt.count("start other") != 1 || rt.count("stop other") != 0 {
		t.Errorf("other (no restart: true) was touched: %v", ev)
	}
}

func TestStopOrderWithBackoffAndWaiting(t *testing.T) {
	s, rt, _ := newTest(t, Options{})
	s.Start(context.Background(), []*manifest.Container{
		ctr("db", "img", nil, nil),
		with(ctr("app", "img", []string{"exit:1"}, map[string]manifest.Dependency{"db": dep(manifest.ConditionStarted)}),
			func(m *manifest.Container) { m.Restart = "always" }),
		ctr("web", "img", nil, map[string]manifest.Dependency{"app": dep(manifest.ConditionReady)}),
	}, nil)
	waitState(t, s, "app", StateBackoff)
	waitState(t, s, "web", StateWaiting)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, ev := range s.Events() {
		if ev.To == StateStopped {
			order = append(order, ev.Container+": "+ev.Reason)
		}
	}
	want := []string{"web: shutdown, while waiting", "app: shutdown, while backing off", "db: shutdown, exit 143 (SIGTERM)"}
	if !slices.Equal(order, want) {
		t.Errorf("stop order %q, want %q", order, want)
	}
	if rt.count("stop db") != 1 {
		t.Errorf("db stopped %d times", rt.count("stop db"))
	}
}

func TestConditionMet(t *testing.T) {
	exit0, exit1 := &Exit{Code: 0}, &Exit{Code: 1}
	tests := []struct {
		cond string
		st   Status
		met  bool
		err  string
	}{
		{manifest.ConditionStarted, Status{State: StateWaiting}, false, ""},
		{manifest.ConditionStarted, Status{State: StateRunning}, true, ""},
		{manifest.ConditionStarted, Status{State: StateExited, LastExit: exit1}, true, ""},
		{manifest.ConditionStarted, Status{State: StateBackoff}, false, ""},
		{manifest.ConditionStarted, Status{State: StateStopping}, false, ""},
		{manifest.ConditionStarted, Status{State: StateStopped, Reason: "stop requested"}, false, "stopped: stop requested"},
		{manifest.ConditionCompleted, Status{State: StateRunning}, false, ""},
		{manifest.ConditionCompleted, Status{State: StateExited, LastExit: exit0}, true, ""},
		{manifest.ConditionCompleted, Status{State: StateBackoff, LastExit: exit0}, true, ""},
		{manifest.ConditionCompleted, Status{State: StateBackoff, LastExit: exit1}, false, ""},
		{manifest.ConditionCompleted, Status{State: StateExited, LastExit: exit1}, false, "did not complete successfully (exit 1)"},
		{manifest.ConditionHealthy, Status{State: StateRunning, Health: &Health{Status: HealthStarting}}, false, ""},
		{manifest.ConditionHealthy, Status{State: StateRunning, Health: &Health{Status: HealthUnhealthy}}, false, ""},
		{manifest.ConditionHealthy, Status{State: StateRunning, Health: &Health{Status: HealthHealthy}}, true, ""},
		{manifest.ConditionHealthy, Status{State: StateExited, LastExit: exit0}, false, "exited (exit 0) before it was healthy"},
		{manifest.ConditionReady, Status{State: StateRunning, Ready: true}, true, ""},
		{manifest.ConditionReady, Status{State: StatePreparing}, false, ""},
		{manifest.ConditionReady, Status{State: StateInvalid, Reason: "bad"}, false, "invalid manifest: bad"},
		{manifest.ConditionReady, Status{State: StateFailed, Reason: "create: boom"}, false, "failed: create: boom"},
	}
	for _, tt := range tests {
		met, err := conditionMet(tt.cond, true, tt.st)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if met != tt.met || gotErr != tt.err {
			t.Errorf("%s with %s %+v: %v, %q; want %v, %q", tt.cond, tt.st.State, tt.st, met, gotErr, tt.met, tt.err)
		}
	}
}
