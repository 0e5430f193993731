package boot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/photon-init/photon-init/internal/syncbuf"
)

func TestRunPlan(t *testing.T) {
	ok := func(m *Machine, ctx context.Context) error { return nil }
	fail := func(m *Machine, ctx context.Context) error { return errors.New("it broke\nsecond line") }
	boom := func(m *Machine, ctx context.Context) error { panic("kaboom") }
	tests := []struct {
		name      string
		sandbox   bool
		plan      []Phase
		wantErr   string
		wantSteps []string // steps recorded in the timeline, in order of phases
		wantLog   []string
	}{
		{
			name:      "all ok",
			plan:      []Phase{{"a", []Step{{Name: "one", Run: ok}}}, {"b", []Step{{Name: "two", Run: ok}, {Name: "three", Run: ok}}}},
			wantSteps: []string{"a/one", "b/two", "b/three"},
		},
		{
			name:      "non-fatal failure goes on",
			plan:      []Phase{{"a", []Step{{Name: "one", Run: fail}}}, {"b", []Step{{Name: "two", Run: ok}}}},
			wantSteps: []string{"a/one", "b/two"},
			wantLog:   []string{"ERROR one: it broke", "ERROR one: second line"},
		},
		{
			name:      "fatal failure stops after its phase",
			plan:      []Phase{{"a", []Step{{Name: "one", Run: fail, Fatal: true}, {Name: "sibling", Run: ok}}}, {"b", []Step{{Name: "two", Run: ok}}}},
			wantErr:   "boot step one: it broke",
			wantSteps: []string{"a/one", "a/sibling"},
		},
		{
			name: "an error marked fatal stops a non-fatal step's boot (a required mount)",
			plan: []Phase{{"a", []Step{{Name: "mounts", Run: func(*Machine, context.Context) error {
				return fatal(errors.New("required mount LABEL=x on /data: no such disk"))
			}}}}, {"b", []Step{{Name: "two", Run: ok}}}},
			wantErr:   "boot step mounts: required mount LABEL=x on /data: no such disk",
			wantSteps: []string{"a/mounts"},
		},
		{
			name:      "panic is a failure, not a crash",
			plan:      []Phase{{"a", []Step{{Name: "one", Run: boom}}}, {"b", []Step{{Name: "two", Run: ok}}}},
			wantSteps: []string{"a/one", "b/two"},
			wantLog:   []string{"ERROR one: one: panic: kaboom"},
		},
		{
			name:      "sandbox skips machine steps",
			sandbox:   true,
			plan:      []Phase{{"a", []Step{{Name: "modules", Run: fail, Machine: true, Fatal: true}, {Name: "one", Run: ok}}}},
			wantSteps: []string{"a/one"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncbuf.Buffer
			m := newMachine(Options{Sandbox: tt.sandbox}, &out)
			err := m.runPlan(context.Background(), tt.plan)
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("runPlan error = %v, want %q", err, tt.wantErr)
			}
			got := map[string]bool{}
			for _, s := range m.timeline.Steps() {
				got[s.Phase+"/"+s.Name] = true
				if s.End < s.Start {
					t.Errorf("step %s not ended", s.Name)
				}
			}
			if len(got) != len(tt.wantSteps) {
				t.Errorf("steps run = %v, want %v", got, tt.wantSteps)
			}
			for _, s := range tt.wantSteps {
				if !got[s] {
					t.Errorf("step %s not run (ran %v)", s, got)
				}
			}
			m.console.Flush(time.Second)
			for _, l := range tt.wantLog {
				if !strings.Contains(out.String(), l) {
					t.Errorf("console lacks %q:\n%s", l, out.String())
				}
			}
		})
	}
}

func TestRunPlanPhaseIsParallel(t *testing.T) {
	var running, peak atomic.Int32
	step := func(m *Machine, ctx context.Context) error {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
		running.Add(-1)
		return nil
	}
	m := newMachine(Options{}, &syncbuf.Buffer{})
	start := time.Now()
	plan := []Phase{{"p", []Step{{Name: "a", Run: step}, {Name: "b", Run: step}, {Name: "c", Run: step}}}}
	if err := m.runPlan(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	if peak.Load() != 3 {
		t.Errorf("peak concurrency %d, want 3 (took %v)", peak.Load(), time.Since(start))
	}
}

// TestRunPlanBackground: the phases after a background step do not wait
// for it, a step that needs its work waits with waitBackground, its failure
// is reported but not fatal, and runPlan returns only once it is done.
func TestRunPlanBackground(t *testing.T) {
	release := make(chan struct{})
	var bgDone, waited, independent atomic.Bool
	bg := func(m *Machine, ctx context.Context) error {
		<-release
		bgDone.Store(true)
		return errors.New("a module failed")
	}
	plan := []Phase{
		{"devices", []Step{{Name: "coldplug", Run: bg, Background: true, Fatal: true}}},
		{"next", []Step{{Name: "independent", Run: func(m *Machine, ctx context.Context) error {
			independent.Store(!bgDone.Load())
			close(release)
			return nil
		}}}},
		{"storage", []Step{{Name: "mounts", Run: func(m *Machine, ctx context.Context) error {
			if err := m.waitBackground(ctx); err != nil {
				return err
			}
			waited.Store(bgDone.Load())
			return nil
		}}}},
	}
	var out syncbuf.Buffer
	m := newMachine(Options{}, &out)
	if err := m.runPlan(context.Background(), plan); err != nil {
		t.Fatalf("runPlan: %v (a background step is never fatal)", err)
	}
	if !independent.Load() {
		t.Error("the next phase waited for the background step")
	}
	if !waited.Load() {
		t.Error("waitBackground returned before the background step was done")
	}
	if !bgDone.Load() {
		t.Error("runPlan returned before the background step was done")
	}
	m.console.Flush(time.Second)
	if !strings.Contains(out.String(), "coldplug: a module failed") {
		t.Errorf("the background step's failure is not on the console:\n%s", out.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.background.Add(1)
	defer m.background.Done()
	if err := m.waitBackground(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("waitBackground with an ended context = %v, want context.Canceled", err)
	}
}

// TestAfterBoot: AfterBoot runs once the boot is complete, background
// steps included, and a panic in it is reported, not a crash.
func TestAfterBoot(t *testing.T) {
	var bgDone, calledAfterBg atomic.Bool
	calls := 0
	plan := []Phase{{"devices", []Step{{Name: "coldplug", Background: true, Run: func(m *Machine, ctx context.Context) error {
		time.Sleep(20 * time.Millisecond)
		bgDone.Store(true)
		return nil
	}}}}}
	var out syncbuf.Buffer
	m := newMachine(Options{TimelinePath: filepath.Join(t.TempDir(), "timeline.json"), AfterBoot: func() {
		calls++
		calledAfterBg.Store(bgDone.Load())
		panic("after-boot broke")
	}}, &out)
	m.bootPlan(context.Background(), plan)
	if calls != 1 || !calledAfterBg.Load() {
		t.Errorf("AfterBoot called %d times, after the background step: %v; want once, after it", calls, calledAfterBg.Load())
	}
	m.console.Flush(time.Second)
	for _, want := range []string{"boot complete", "after boot: panic: after-boot broke"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, out.String())
		}
	}
}

func TestLoadConfigBrokenFileKeepsCommandLine(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/init.yaml"
	if err := writeFile(path, "hostname: from-file\nmodules: [a]\nhostnme: typo\n"); err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	m := newMachine(Options{ConfigPath: path}, &out)
	m.cmdline = ParseCmdline("photon.hostname=from-cmdline photon.loglevel=debug")
	err := m.loadConfig(context.Background())
	if err == nil || !strings.Contains(err.Error(), path+":3: field hostnme not found") {
		t.Fatalf("loadConfig error = %v", err)
	}
	s := m.Settings()
	if s.Hostname != "from-cmdline" || len(s.Modules) != 0 || s.LogLevel != "debug" {
		t.Errorf("settings after a broken file = %+v; want the command line alone", s)
	}
	if err := writeFile(path, "hostname: from-file\nconsole:\n  loglevel: warn\n"); err != nil {
		t.Fatal(err)
	}
	if err := m.loadConfig(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := m.Settings(); s.Hostname != "from-cmdline" || s.LogLevel != "debug" {
		t.Errorf("command line did not win: %+v", s)
	}
}

func TestSurvivableSignalsExcludePowerAndGlibc(t *testing.T) {
	for _, s := range survivableSignals() {
		switch s.String() {
		case "interrupt", "terminated", "user defined signal 1", "user defined signal 2", "power failure":
			t.Errorf("power signal %v in survivable list", s)
		}
	}
	n := len(survivableSignals())
	// 12 classic ones + real-time 34..64 (31) minus the 3 power ones.
	if n != 12+31-3 {
		t.Errorf("%d survivable signals", n)
	}
}

func writeFile(path, text string) error { return os.WriteFile(path, []byte(text), 0o644) }
