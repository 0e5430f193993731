package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// fakeImages knows the images named in it.
type fakeImages map[string]bool

func (f fakeImages) Get(_ context.Context, ref string) (*image.Image, error) {
	if !f[ref] {
		return nil, fmt.Errorf("image %s: no such image", ref)
	}
	return &image.Image{Ref: ref, Digest: "sha256:" + ref}, nil
}

// probeFunc answers a health probe.
type probeFunc func(argv []string) (int, []byte, error)

// fakeRuntime runs fake processes that exit with the code their command
// says ("exit:N") or run until stopped, or until the test ends them; a
// command "create-fails" fails Create. It records what happens, in order,
// and answers health probes with the probe set for the container.
type fakeRuntime struct {
	mu        sync.Mutex
	events    []string
	instances map[string][]*fakeInstance
	probes    map[string]probeFunc
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{instances: map[string][]*fakeInstance{}, probes: map[string]probeFunc{}}
}

func (r *fakeRuntime) record(e string) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// Events returns what happened so far: "start web", "stop web", "kill web".
func (r *fakeRuntime) Events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// count counts the recorded events e.
func (r *fakeRuntime) count(e string) int {
	n := 0
	for _, x := range r.Events() {
		if x == e {
			n++
		}
	}
	return n
}

// latest is the last instance created for name.
func (r *fakeRuntime) latest(t *testing.T, name string) *fakeInstance {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	is := r.instances[name]
	if len(is) == 0 {
		t.Fatalf("no instance of %s", name)
	}
	return is[len(is)-1]
}

// setProbe sets how the health probes of name answer.
func (r *fakeRuntime) setProbe(name string, code int, out string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.probes[name] = func([]string) (int, []byte, error) { return code, []byte(out), err }
}

func (r *fakeRuntime) Create(_ context.Context, m *manifest.Container, _ *image.Image) (Instance, error) {
	if slices.Contains(m.Command, "create-fails") {
		r.record("create-failed " + m.Name)
		return nil, errors.New("boom")
	}
	f := &fakeInstance{r: r, m: m, exited: make(chan struct{}), notes: make(chan Notification, 16)}
	r.mu.Lock()
	r.instances[m.Name] = append(r.instances[m.Name], f)
	r.mu.Unlock()
	return f, nil
}

type fakeInstance struct {
	r      *fakeRuntime
	m      *manifest.Container
	exited chan struct{} // closed by exit
	notes  chan Notification

	mu        sync.Mutex
	done      bool
	status    Exit // once exited is closed
	destroyed bool
	execs     [][]string
}

// exit ends the fake process (once).
func (f *fakeInstance) exit(e Exit) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.done {
		f.done = true
		f.status = e
		close(f.exited)
	}
}

func (f *fakeInstance) Start(context.Context) error {
	f.r.record("start " + f.m.Name)
	for _, c := range f.m.Command {
		var code int
		if _, err := fmt.Sscanf(c, "exit:%d", &code); err == nil {
			f.exit(Exit{Code: code})
		}
	}
	return nil
}

func (f *fakeInstance) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-f.exited:
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.status, nil
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

func (f *fakeInstance) Done() <-chan struct{} { return f.exited }

func (f *fakeInstance) Stop(_ context.Context, sig syscall.Signal, _ time.Duration) error {
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	if sig == syscall.SIGKILL {
		f.r.record("kill " + f.m.Name)
	} else {
		f.r.record("stop " + f.m.Name)
	}
	f.exit(Exit{Code: 128 + int(sig), Signal: unix.SignalName(sig)})
	return nil
}

func (f *fakeInstance) Destroy() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.destroyed = true
	return nil
}

func (f *fakeInstance) Pid() int { return 42 }

func (f *fakeInstance) Exec(_ context.Context, argv []string, _ time.Duration) (int, []byte, error) {
	f.mu.Lock()
	f.execs = append(f.execs, argv)
	f.mu.Unlock()
	f.r.mu.Lock()
	p := f.r.probes[f.m.Name]
	f.r.mu.Unlock()
	if p == nil {
		return 0, nil, nil
	}
	return p(argv)
}

func (f *fakeInstance) Notifications() <-chan Notification { return f.notes }

// execed returns the commands run by Exec.
func (f *fakeInstance) execed() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.execs)
}

func ctr(name, img string, cmd []string, deps map[string]manifest.Dependency) *manifest.Container {
	return &manifest.Container{Name: name, File: name + ".yaml", Image: img, Command: cmd, DependsOn: deps}
}

// with returns a copy of m changed by fn.
func with(m *manifest.Container, fn func(*manifest.Container)) *manifest.Container {
	c := *m
	fn(&c)
	return &c
}

// epoch is the fake clock's start.
var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// newTest returns a supervisor on a fake runtime and a fake clock, with
// every image but "missing" available; it is stopped when the test ends.
func newTest(t *testing.T, opts Options) (*Supervisor, *fakeRuntime, *clockwork.FakeClock) {
	t.Helper()
	rt := newFakeRuntime()
	clk := clockwork.NewFakeClockAt(epoch)
	if opts.Images == nil {
		opts.Images = anyImage{}
	}
	opts.Runtime, opts.Clock = rt, clk
	s := New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return s, rt, clk
}

// anyImage has every image but "missing".
type anyImage struct{}

func (anyImage) Get(_ context.Context, ref string) (*image.Image, error) {
	if ref == "missing" {
		return nil, fmt.Errorf("image %s: no such image", ref)
	}
	return &image.Image{Ref: ref, Digest: "sha256:" + ref}, nil
}

// status returns container name's status.
func status(t *testing.T, s *Supervisor, name string) Status {
	t.Helper()
	for _, st := range s.Status() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no container %s: %+v", name, s.Status())
	return Status{}
}

// waitFor waits until container name's status satisfies ok.
func waitFor(t *testing.T, s *Supervisor, name, what string, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, st := range s.Status() {
			if st.Name == name && ok(st) {
				return st
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("container %s never got %s; status: %+v", name, what, s.Status())
	return Status{}
}

// waitState waits until container name reaches one of the states.
func waitState(t *testing.T, s *Supervisor, name string, states ...State) Status {
	t.Helper()
	return waitFor(t, s, name, fmt.Sprint(states), func(st Status) bool { return slices.Contains(states, st.State) })
}

// waitReason waits until container name is in state with reason.
func waitReason(t *testing.T, s *Supervisor, name string, state State, reason string) Status {
	t.Helper()
	return waitFor(t, s, name, fmt.Sprintf("%s (%s)", state, reason), func(st Status) bool { return st.State == state && st.Reason == reason })
}

func TestOneBadContainerDoesNotStopOthers(t *testing.T) {
	rt := newFakeRuntime()
	s := New(Options{Images: fakeImages{"good": true}, Runtime: rt})
	s.Start(context.Background(),
		[]*manifest.Container{
			ctr("web", "good", nil, nil),
			ctr("noimage", "missing", nil, nil),
			ctr("broken", "good", []string{"create-fails"}, nil),
		},
		[]Invalid{{Name: "typo", File: "/etc/photon/containers/typo.yaml", Err: errors.New("typo.yaml:3: field imagee not found")}})

	tests := []struct {
		name   string
		state  State
		reason string
	}{
		{"web", StateRunning, "started, pid 42"},
		{"noimage", StateFailed, "image missing: no such image"},
		{"broken", StateFailed, "create: boom"},
		{"typo", StateInvalid, "typo.yaml:3: field imagee not found"},
	}
	for _, tt := range tests {
		st := waitState(t, s, tt.name, tt.state)
		if st.Reason != tt.reason {
			t.Errorf("%s: reason %q, want %q", tt.name, st.Reason, tt.reason)
		}
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitReason(t, s, "web", StateStopped, "shutdown, exit 143 (SIGTERM)")
}

func TestDependencyOrder(t *testing.T) {
	rt := newFakeRuntime()
	s := New(Options{Images: fakeImages{"img": true}, Runtime: rt})
	s.Start(context.Background(), []*manifest.Container{
		ctr("app", "img", nil, map[string]manifest.Dependency{
			"db":      {Condition: "service_started", Required: true},
			"migrate": {Condition: "service_completed_successfully", Required: true},
		}),
		ctr("migrate", "img", []string{"exit:0"}, map[string]manifest.Dependency{"db": {Required: true}}),
		ctr("db", "img", nil, nil),
		ctr("after-bad", "img", nil, map[string]manifest.Dependency{"bad-oneshot": {Condition: "service_completed_successfully", Required: true}}),
		ctr("bad-oneshot", "img", []string{"exit:3"}, nil),
	}, nil)
	waitState(t, s, "app", StateRunning)
	st := waitState(t, s, "after-bad", StateFailed)
	if want := "dependency bad-oneshot: did not complete successfully (exit 3)"; st.Reason != want {
		t.Errorf("after-bad reason %q, want %q", st.Reason, want)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	ev := rt.Events()
	pos := func(e string) int {
		i := slices.Index(ev, e)
		if i < 0 {
			t.Fatalf("no event %q in %v", e, ev)
		}
		return i
	}
	for _, before := range [][2]string{
		{"start db", "start migrate"}, {"start migrate", "start app"},
		{"stop app", "stop db"}, // reverse dependency order at stop
	} {
		if pos(before[0]) > pos(before[1]) {
			t.Errorf("%q came after %q: %v", before[0], before[1], ev)
		}
	}
}

func TestExitString(t *testing.T) {
	for _, tt := range []struct {
		e    Exit
		want string
	}{
		{Exit{Code: 0}, "exit 0"},
		{Exit{Code: 137, Signal: "SIGKILL", OOM: true}, "exit 137 (SIGKILL, OOM killed)"},
		{Exit{Code: 143, Signal: "SIGTERM"}, "exit 143 (SIGTERM)"},
		{Exit{Code: 137, OOM: true}, "exit 137 (OOM killed)"},
	} {
		if got := tt.e.String(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestStopSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"": 0, "SIGINT": syscall.SIGINT, "quit": syscall.SIGQUIT, "9": syscall.SIGKILL} {
		if got := stopSignal(&manifest.Container{StopSignal: in}); got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
}

func TestRegistryImagesWaitForTheNetwork(t *testing.T) {
	online := make(chan struct{})
	s, _, _ := newTest(t, Options{
		NetworkOnline: online,
		Remote:        func(ref string) bool { return strings.HasPrefix(ref, "registry.example/") },
	})
	s.Start(context.Background(), []*manifest.Container{
		ctr("local", "local", nil, nil),
		ctr("pulled", "registry.example/app:1", nil, nil),
	}, nil)
	waitState(t, s, "local", StateRunning)
	waitReason(t, s, "pulled", StateWaiting, "waiting for the network to pull registry.example/app:1")
	close(online)
	waitState(t, s, "pulled", StateRunning)
}

func TestNetworkOnlineDependency(t *testing.T) {
	online := make(chan struct{})
	s, _, _ := newTest(t, Options{NetworkOnline: online})
	s.Start(context.Background(), []*manifest.Container{
		ctr("web", "img", nil, map[string]manifest.Dependency{manifest.NetworkOnline: {Condition: manifest.ConditionStarted, Required: true}}),
		ctr("local", "img", nil, nil),
	}, nil)
	waitState(t, s, "local", StateRunning)
	waitReason(t, s, "web", StateWaiting, "waiting for the network to be online")
	close(online)
	waitState(t, s, "web", StateRunning)

	// Without a NetworkOnline channel the network is taken as online.
	s2, _, _ := newTest(t, Options{})
	s2.Start(context.Background(), []*manifest.Container{
		ctr("web", "img", nil, map[string]manifest.Dependency{manifest.NetworkOnline: {Required: true}}),
	}, nil)
	waitState(t, s2, "web", StateRunning)
}

func TestOperatorStopStartRestart(t *testing.T) {
	s, rt, clk := newTest(t, Options{})
	s.Start(context.Background(), []*manifest.Container{
		with(ctr("web", "img", nil, nil), func(m *manifest.Container) { m.Restart = "always" }),
		with(ctr("crash", "img", []string{"exit:1"}, nil), func(m *manifest.Container) { m.Restart = "always" }),
	}, nil)
	waitState(t, s, "web", StateRunning)
	if err := s.StopContainer(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	// Stopped by the operator: not restarted, even under "always".
	if st := status(t, s, "web"); st.State != StateStopped || st.Reason != "stop requested, exit 143 (SIGTERM)" {
		t.Fatalf("web after StopContainer: %s (%s)", st.State, st.Reason)
	}
	if err := s.StartContainer("web"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "web", "a second start", func(st Status) bool { return st.State == StateRunning && rt.count("start web") == 2 })
	if err := s.RestartContainer("web"); err != nil {
		t.Fatal(err)
	}
	st := waitFor(t, s, "web", "a restart", func(st Status) bool { return st.State == StateRunning && rt.count("start web") == 3 })
	if st.Restarts != 1 {
		t.Errorf("restarts %d, want 1", st.Restarts)
	}

	// An operator's restart ends a backoff at once; the clock does not move.
	waitState(t, s, "crash", StateBackoff)
	if err := s.RestartContainer("crash"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "crash", "a second start", func(Status) bool { return rt.count("start crash") == 2 })
	if clk.Since(epoch) != 0 {
		t.Errorf("the clock moved")
	}

	for _, err := range []error{s.StartContainer("ghost"), s.StopContainer(context.Background(), "ghost"), s.RestartContainer("ghost")} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("operation on a missing container: %v, want ErrNotFound", err)
		}
	}
}
