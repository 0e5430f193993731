package supervisor

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

func TestHealthConfigFor(t *testing.T) {
	img := &image.Healthcheck{Test: []string{"CMD-SHELL", "curl -f localhost"}, Interval: time.Minute, Timeout: 3 * time.Second, Retries: 5}
	tests := []struct {
		name string
		m    *manifest.Healthcheck
		img  *image.Healthcheck
		want *healthConfig
		err  bool
	}{
		{name: "none at all"},
		{name: "image only", img: img, want: &healthConfig{
			argv: []string{"/bin/sh", "-c", "curl -f localhost"}, interval: time.Minute, timeout: 3 * time.Second,
			startInterval: 5 * time.Second, retries: 5,
		}},
		{name: "manifest overrides field by field", img: img,
			m: &manifest.Healthcheck{Interval: 10 * time.Second, StartPeriod: time.Minute, StartInterval: time.Second},
			want: &healthConfig{
				argv: []string{"/bin/sh", "-c", "curl -f localhost"}, interval: 10 * time.Second, timeout: 3 * time.Second,
				startPeriod: time.Minute, startInterval: time.Second, retries: 5,
			}},
		{name: "manifest test and Docker's defaults",
			m: &manifest.Healthcheck{Test: []string{"CMD", "/app", "health"}},
			want: &healthConfig{
				argv: []string{"/app", "health"}, interval: 30 * time.Second, timeout: 30 * time.Second,
				startInterval: 5 * time.Second, retries: 3,
			}},
		{name: "disable", img: img, m: &manifest.Healthcheck{Test: []string{"NONE"}, Disable: true}},
		{name: "NONE in the image", img: &image.Healthcheck{Test: []string{"NONE"}}},
		{name: "image test without a command", img: &image.Healthcheck{Test: []string{"CMD"}}, err: true},
		{name: "image test of an unknown kind", img: &image.Healthcheck{Test: []string{"RUN", "x"}}, err: true},
	}
	for _, tt := range tests {
		got, err := healthConfigFor(tt.m, tt.img)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %+v, %v; want %+v (error %v)", tt.name, got, err, tt.want, tt.err)
		}
	}
}

func TestHealthState(t *testing.T) {
	cfg := &healthConfig{interval: 10 * time.Second, timeout: time.Second, startPeriod: 30 * time.Second, startInterval: 2 * time.Second, retries: 2}
	at := func(d time.Duration) time.Time { return epoch.Add(d) }
	pass := func(d time.Duration) probeResult { return probeResult{start: at(d), code: 0, out: []byte("ok\n")} }
	fail := func(d time.Duration) probeResult { return probeResult{start: at(d), code: 1, out: []byte("down")} }
	timeout := func(d time.Duration) probeResult {
		return probeResult{start: at(d), err: fmt.Errorf("exec: %w", context.DeadlineExceeded), timeout: time.Second}
	}
	tests := []struct {
		name   string
		probes []probeResult
		status []HealthStatus // after each probe
		delay  time.Duration  // next delay after the last probe, at its time
	}{
		{"failures in the start period do not count", []probeResult{fail(2 * time.Second), fail(4 * time.Second), fail(6 * time.Second)},
			[]HealthStatus{HealthStarting, HealthStarting, HealthStarting}, 2 * time.Second},
		{"a success ends the start period", []probeResult{fail(2 * time.Second), pass(4 * time.Second)},
			[]HealthStatus{HealthStarting, HealthHealthy}, 10 * time.Second},
		{"after the start period failures count", []probeResult{fail(30 * time.Second), timeout(40 * time.Second)},
			[]HealthStatus{HealthStarting, HealthUnhealthy}, 10 * time.Second},
		{"healthy, unhealthy, healthy", []probeResult{pass(2 * time.Second), fail(12 * time.Second), fail(22 * time.Second), pass(32 * time.Second)},
			[]HealthStatus{HealthHealthy, HealthHealthy, HealthUnhealthy, HealthHealthy}, 10 * time.Second},
	}
	for _, tt := range tests {
		hs := newHealthState(cfg, epoch)
		if d := hs.nextDelay(epoch); d != 2*time.Second {
			t.Errorf("%s: first probe after %v, want the start interval", tt.name, d)
		}
		var got []HealthStatus
		for _, p := range tt.probes {
			hs.record(p)
			got = append(got, hs.h.Status)
		}
		if !slices.Equal(got, tt.status) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.status)
		}
		if d := hs.nextDelay(tt.probes[len(tt.probes)-1].start); d != tt.delay {
			t.Errorf("%s: next probe after %v, want %v", tt.name, d, tt.delay)
		}
	}
	r := timeout(0)
	if r.output() != "health check exceeded its timeout (1s)" || r.exitCode() != -1 {
		t.Errorf("timeout probe: %q, %d", r.output(), r.exitCode())
	}
	big := probeResult{code: 1, out: []byte(strings.Repeat("é", 3000))}
	if out := big.output(); len(out) > maxProbeOutput || !strings.HasPrefix(out, "éé") || strings.ContainsRune(out, '\uFFFD') {
		t.Errorf("long output kept as %d bytes, ending %q", len(out), out[len(out)-4:])
	}
}

func TestHealthTransitionsAndRestart(t *testing.T) {
	s, rt, clk := newTest(t, Options{})
	s.Start(context.Background(), []*manifest.Container{
		with(ctr("web", "img", nil, nil), func(m *manifest.Container) {
			healthy(m)
			m.Restart = "on-failure"
			m.Healthcheck.Test = []string{"CMD-SHELL", "curl -f localhost"}
		}),
		with(ctr("keep", "img", nil, nil), func(m *manifest.Container) { healthy(m); m.Restart = "no" }),
	}, nil)
	probe := func(name string) Status {
		t.Helper()
		return waitFor(t, s, name, "a probe", func(st Status) bool { return st.Health != nil && st.Health.LastProbe.Equal(clk.Now()) })
	}
	st := waitState(t, s, "web", StateRunning)
	waitState(t, s, "keep", StateRunning)
	if st.Health == nil || st.Health.Status != HealthStarting {
		t.Fatalf("web health at start: %+v", st.Health)
	}
	clk.Advance(time.Second)
	if st := probe("web"); st.Health.Status != HealthHealthy || st.Reason != "healthy" {
		t.Fatalf("web after a good probe: %s, %+v", st.Reason, st.Health)
	}
	probe("keep")
	if argv := rt.latest(t, "web").execed()[0]; !slices.Equal(argv, []string{"/bin/sh", "-c", "curl -f localhost"}) {
		t.Errorf("probe argv %q", argv)
	}

	rt.setProbe("web", 1, "503 Service Unavailable\nmore", nil)
	rt.setProbe("keep", 7, "", errors.New("no such file"))
	clk.Advance(time.Second)
	if st := probe("web"); st.Health.Status != HealthHealthy || st.Health.FailingStreak != 1 {
		t.Fatalf("web after one bad probe: %+v", st.Health)
	}
	probe("keep")
	clk.Advance(time.Second)
	// Unhealthy under on-failure: stopped and restarted, the reason kept.
	st = waitState(t, s, "web", StateBackoff)
	if want := "backing off, next start in 100ms, last unhealthy (health check exit 1: 503 Service Unavailable), exit 143 (SIGTERM)"; st.Reason != want {
		t.Errorf("web reason %q, want %q", st.Reason, want)
	}
	var saw bool
	for _, ev := range s.Events() {
		saw = saw || (ev.Container == "web" && ev.To == StateRunning && ev.Reason == "unhealthy after 2 failed health checks: health check exit 1: 503 Service Unavailable")
	}
	if !saw {
		t.Errorf("no unhealthy event for web: %+v", s.Events())
	}
	// Unhealthy under "no": it keeps running, shown unhealthy.
	st = probe("keep")
	if st.State != StateRunning || st.Health.Status != HealthUnhealthy ||
		st.Reason != "unhealthy after 2 failed health checks: health check could not run: no such file" {
		t.Errorf("keep: %s (%s), %+v", st.State, st.Reason, st.Health)
	}
	if rt.count("stop keep") != 0 {
		t.Errorf("keep was stopped")
	}

	clk.Advance(100 * time.Millisecond)
	st = waitFor(t, s, "web", "running again", func(st Status) bool { return st.State == StateRunning && st.Restarts == 1 })
	if st.Health == nil || st.Health.Status != HealthStarting {
		t.Errorf("web health after the restart: %+v", st.Health)
	}
}

func TestWatchdog(t *testing.T) {
	s, rt, clk := newTest(t, Options{})
	watch := func(m *manifest.Container) { m.Watchdog = 5 * time.Second }
	s.Start(context.Background(), []*manifest.Container{
		with(ctr("web", "img", nil, nil), func(m *manifest.Container) { watch(m); m.Restart = "always" }),
		with(ctr("once", "img", nil, nil), watch),
	}, nil)
	waitState(t, s, "web", StateRunning)
	waitState(t, s, "once", StateRunning)
	clk.Advance(4 * time.Second)
	rt.latest(t, "web").notes <- Notification{Watchdog: true}
	rt.latest(t, "once").notes <- Notification{Ready: true} // READY=1 resets it too
	waitFor(t, s, "web", "a ping", func(st Status) bool { return st.LastWatchdog.Equal(clk.Now()) })
	waitFor(t, s, "once", "ready", func(st Status) bool { return st.Ready })
	clk.Advance(4 * time.Second) // 8s: 4s after the ping
	if st := status(t, s, "web"); st.State != StateRunning {
		t.Fatalf("web after a ping 4s ago: %s (%s)", st.State, st.Reason)
	}
	clk.Advance(time.Second) // 9s: 5s without a ping
	st := waitState(t, s, "web", StateBackoff)
	if want := "backing off, next start in 100ms, last watchdog timeout (no WATCHDOG=1 for 5s), exit 137 (SIGKILL)"; st.Reason != want {
		t.Errorf("web reason %q, want %q", st.Reason, want)
	}
	if rt.count("kill web") != 1 {
		t.Errorf("web was not killed: %v", rt.Events())
	}
	waitReason(t, s, "once", StateExited, "watchdog timeout (no WATCHDOG=1 for 5s), exit 137 (SIGKILL)")
	clk.Advance(100 * time.Millisecond)
	waitFor(t, s, "web", "running again", func(st Status) bool { return st.State == StateRunning && st.Restarts == 1 })
}

func TestWatchdogFromTheContainer(t *testing.T) {
	s, rt, clk := newTest(t, Options{})
	s.Start(context.Background(), []*manifest.Container{ctr("trigger", "img", nil, nil), ctr("usec", "img", nil, nil)}, nil)
	waitState(t, s, "trigger", StateRunning)
	waitState(t, s, "usec", StateRunning)
	rt.latest(t, "trigger").notes <- Notification{WatchdogTrigger: true}
	waitReason(t, s, "trigger", StateExited, "watchdog triggered by the container (WATCHDOG=trigger), exit 137 (SIGKILL)")

	// WATCHDOG_USEC= starts a watchdog for a container without one.
	rt.latest(t, "usec").notes <- Notification{WatchdogTimeout: 2 * time.Second, Status: "armed"}
	waitFor(t, s, "usec", "the message", func(st Status) bool { return st.NotifyStatus == "armed" })
	clk.Advance(2 * time.Second)
	waitReason(t, s, "usec", StateExited, "watchdog timeout (no WATCHDOG=1 for 2s), exit 137 (SIGKILL)")
}

func TestNotifyReasons(t *testing.T) {
	s, rt, _ := newTest(t, Options{})
	s.Start(context.Background(), []*manifest.Container{ctr("web", "img", nil, nil)}, nil)
	waitState(t, s, "web", StateRunning)
	inst := rt.latest(t, "web")
	for _, tt := range []struct {
		n      Notification
		reason string
	}{
		{Notification{Ready: true}, reasonNotifyReady},
		{Notification{Reloading: true}, reasonNotifyReloading},
		{Notification{Ready: true}, reasonNotifyReady},
		{Notification{Status: strings.Repeat("x", 1000)}, reasonNotifyReady},
		{Notification{Stopping: true}, reasonNotifyStopping},
	} {
		inst.notes <- tt.n
		waitReason(t, s, "web", StateRunning, tt.reason)
	}
	if st := status(t, s, "web"); len(st.NotifyStatus) != maxNotifyStatus {
		t.Errorf("status line kept as %d bytes", len(st.NotifyStatus))
	}
}
