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

// fakeRuntime runs fake processes that exit with the code their command
// says ("exit:N") or run until stopped; it records the order of events.
type fakeRuntime struct {
	mu     sync.Mutex
	events []string
}

func (r *fakeRuntime) record(e string) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *fakeRuntime) Events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *fakeRuntime) Create(_ context.Context, m *manifest.Container, _ *image.Image) (Instance, error) {
	if slices.Contains(m.Command, "create-fails") {
		return nil, errors.New("boom")
	}
	return &fakeInstance{r: r, m: m, exited: make(chan Exit, 1)}, nil
}

type fakeInstance struct {
	r      *fakeRuntime
	m      *manifest.Container
	exited chan Exit
}

func (f *fakeInstance) Start(context.Context) error {
	f.r.record("start " + f.m.Name)
	for _, c := range f.m.Command {
		var code int
		if _, err := fmt.Sscanf(c, "exit:%d", &code); err == nil {
			f.exited <- Exit{Code: code}
		}
	}
	return nil
}

func (f *fakeInstance) Wait(ctx context.Context) (Exit, error) {
	select {
	case e := <-f.exited:
		return e, nil
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

func (f *fakeInstance) Stop(_ context.Context, sig syscall.Signal, _ time.Duration) error {
	f.r.record("stop " + f.m.Name)
	f.exited <- Exit{Code: 128 + int(syscall.SIGTERM), Signal: "SIGTERM"}
	return nil
}

func (f *fakeInstance) Destroy() error { return nil }
func (f *fakeInstance) Pid() int       { return 42 }

func ctr(name, img string, cmd []string, deps map[string]manifest.Dependency) *manifest.Container {
	return &manifest.Container{Name: name, File: name + ".yaml", Image: img, Command: cmd, DependsOn: deps}
}

// waitState waits until container name reaches one of the states.
func waitState(t *testing.T, s *Supervisor, name string, states ...State) Status {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, st := range s.Status() {
			if st.Name == name && slices.Contains(states, st.State) {
				return st
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("container %s never reached %v; status: %+v", name, states, s.Status())
	return Status{}
}

func TestOneBadContainerDoesNotStopOthers(t *testing.T) {
	rt := &fakeRuntime{}
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
	waitState(t, s, "web", StateStopped)
}

func TestDependencyOrder(t *testing.T) {
	rt := &fakeRuntime{}
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
	rt := &fakeRuntime{}
	online := make(chan struct{})
	s := New(Options{
		Images: fakeImages{"local": true, "registry.example/app:1": true}, Runtime: rt,
		NetworkOnline: online,
		Remote:        func(ref string) bool { return strings.HasPrefix(ref, "registry.example/") },
	})
	s.Start(context.Background(), []*manifest.Container{
		ctr("local", "local", nil, nil),
		ctr("pulled", "registry.example/app:1", nil, nil),
	}, nil)
	waitState(t, s, "local", StateRunning)
	want := "waiting for the network to pull registry.example/app:1"
	deadline := time.Now().Add(5 * time.Second)
	for st := waitState(t, s, "pulled", StateWaiting); st.Reason != want; st = waitState(t, s, "pulled", StateWaiting) {
		if time.Now().After(deadline) {
			t.Fatalf("reason %q, want %q", st.Reason, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if st := waitState(t, s, "pulled", StateWaiting); st.Reason != want {
		t.Fatalf("pulled moved on before the network was online: %+v", st)
	}
	close(online)
	waitState(t, s, "pulled", StateRunning)
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}
