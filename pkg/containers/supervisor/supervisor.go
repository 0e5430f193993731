// Package supervisor runs the machine's declared containers: it loads the
// manifests, gets each container's image, creates and starts the containers
// in dependency order (independent ones in parallel), keeps each
// container's state with the reason for it, and stops them in reverse
// dependency order.
//
// A bad manifest, a missing image or a container that fails to start is that
// container's state; it never stops the others.
//
// The supervisor is written against three small interfaces (Images,
// Runtime, Instance) so that image stores and runtimes stay apart from the
// policy that drives them, as Talos' machined keeps runners apart from
// services.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// Images gives unpacked images by reference.
type Images interface {
	Get(ctx context.Context, ref string) (*image.Image, error)
}

// Runtime creates containers from a manifest and an unpacked image.
type Runtime interface {
	Create(ctx context.Context, m *manifest.Container, img *image.Image) (Instance, error)
}

// Instance is one created container.
type Instance interface {
	// Start starts the container's process.
	Start(ctx context.Context) error
	// Wait blocks until the container's process has exited.
	Wait(ctx context.Context) (Exit, error)
	// Stop sends sig (0: the image's STOPSIGNAL, else SIGTERM), waits up
	// to grace, then kills.
	Stop(ctx context.Context, sig syscall.Signal, grace time.Duration) error
	// Destroy releases everything the container holds.
	Destroy() error
	// Pid is the container's first process as seen by the supervisor.
	Pid() int
}

// Exit is how a container's process ended.
type Exit struct {
	Code   int    // exit status, or 128+signal when killed
	Signal string // signal name when killed, else ""
	OOM    bool   // killed by the kernel's OOM killer
}

// String describes the exit for people: "exit 0", "exit 137 (SIGKILL, OOM killed)".
func (e Exit) String() string {
	s := fmt.Sprintf("exit %d", e.Code)
	switch {
	case e.Signal != "" && e.OOM:
		s += " (" + e.Signal + ", OOM killed)"
	case e.Signal != "":
		s += " (" + e.Signal + ")"
	case e.OOM:
		s += " (OOM killed)"
	}
	return s
}

// State is a container's place in its life.
type State string

// Container states.
const (
	StateInvalid   State = "invalid"   // the manifest could not be used
	StateWaiting   State = "waiting"   // for its dependencies
	StatePreparing State = "preparing" // getting its image, creating it
	StateRunning   State = "running"
	StateExited    State = "exited"   // its process ended by itself
	StateFailed    State = "failed"   // it could not be prepared or started
	StateStopping  State = "stopping" // asked to stop
	StateStopped   State = "stopped"  // stopped on request
)

// Status is a snapshot of one container.
type Status struct {
	Name        string    `json:"name"`
	File        string    `json:"file,omitempty"`
	Image       string    `json:"image,omitempty"`
	ImageDigest string    `json:"imageDigest,omitempty"`
	State       State     `json:"state"`
	Reason      string    `json:"reason,omitempty"`
	Pid         int       `json:"pid,omitempty"`
	StartedAt   time.Time `json:"startedAt,omitzero"`
	FinishedAt  time.Time `json:"finishedAt,omitzero"`
	LastExit    *Exit     `json:"lastExit,omitempty"`
}

// Event is one state change.
type Event struct {
	Time      time.Time `json:"time"`
	Container string    `json:"container"`
	From      State     `json:"from"`
	To        State     `json:"to"`
	Reason    string    `json:"reason,omitempty"`
}

// Options configure a Supervisor.
type Options struct {
	Images  Images
	Runtime Runtime
	Log     *slog.Logger
	// DefaultStopGrace is used when a manifest sets no stop_grace_period.
	DefaultStopGrace time.Duration
	// NetworkOnline, if set, is closed once the machine's network is
	// online; images for which Remote says true are not fetched before.
	NetworkOnline <-chan struct{}
	// Remote reports whether an image reference is fetched over the
	// network (a registry reference); nil means none is.
	Remote func(ref string) bool
	// OnEvent, if set, is called for every state change (after the state
	// is updated; it must not block for long).
	OnEvent func(Event)
}

// Supervisor runs a set of containers.
type Supervisor struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	units  map[string]*unit
	order  []string // names in load order
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// unit is one container under supervision.
type unit struct {
	m       *manifest.Container // nil for an invalid manifest
	status  Status
	changed chan struct{} // closed and replaced at every state change
	inst    Instance
	stop    chan struct{} // closed when the unit is asked to stop
	done    chan struct{} // closed when the unit's goroutine has finished
}

// New returns a supervisor; Start gives it containers.
func New(opts Options) *Supervisor {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.DefaultStopGrace == 0 {
		opts.DefaultStopGrace = 10 * time.Second
	}
	return &Supervisor{opts: opts, log: opts.Log, units: map[string]*unit{}}
}

// Invalid is a manifest that could not be loaded: its container is shown in
// the invalid state with the error as the reason.
type Invalid struct {
	Name string // the container's name (from the file name)
	File string
	Err  error
}

// Start starts every valid container in dependency order and records the
// invalid ones. It returns at once; the containers are prepared and started
// in the background until ctx is cancelled or Stop is called.
func (s *Supervisor) Start(ctx context.Context, cs []*manifest.Container, invalid []Invalid) {
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.cancel = cancel
	for _, bad := range invalid {
		u := s.addLocked(bad.Name, nil)
		u.status.File = bad.File
		close(u.done)
		s.setLocked(u, StateInvalid, firstLine(bad.Err))
		s.log.Error(fmt.Sprintf("container %s: %v", bad.Name, bad.Err))
	}
	var started []*unit
	for _, m := range cs {
		if u, dup := s.units[m.Name]; dup {
			s.log.Error(fmt.Sprintf("container %s: %s: name already used by %s", m.Name, m.File, u.status.File))
			continue
		}
		u := s.addLocked(m.Name, m)
		u.status.File = m.File
		u.status.Image = m.Image
		started = append(started, u)
	}
	s.mu.Unlock()
	for _, u := range started {
		s.wg.Add(1)
		safe.Go(s.log, "container "+u.m.Name, func() {
			defer s.wg.Done()
			defer close(u.done)
			s.run(ctx, u)
		})
	}
}

func (s *Supervisor) addLocked(name string, m *manifest.Container) *unit {
	u := &unit{
		m:       m,
		status:  Status{Name: name, State: StateWaiting},
		changed: make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.units[name] = u
	s.order = append(s.order, name)
	return u
}

// run is one container's life: wait for dependencies, prepare, start, wait.
// Restart policies, health checks and readiness are grown here by the
// supervision work; for now a container that exits stays exited.
func (s *Supervisor) run(ctx context.Context, u *unit) {
	name := u.m.Name
	if err := s.waitDependencies(ctx, u); err != nil {
		s.set(u, StateFailed, err.Error())
		return
	}
	if s.stopping(u) {
		s.set(u, StateStopped, "stopped before it started")
		return
	}
	if err := s.waitNetwork(ctx, u); err != nil {
		s.fail(u, err)
		return
	}
	s.set(u, StatePreparing, "getting image "+u.m.Image)
	img, err := s.opts.Images.Get(ctx, u.m.Image)
	if err != nil {
		// The store's errors name the reference already.
		s.fail(u, err)
		return
	}
	s.mu.Lock()
	u.status.ImageDigest = img.Digest
	s.mu.Unlock()
	inst, err := s.opts.Runtime.Create(ctx, u.m, img)
	if err != nil {
		s.fail(u, fmt.Errorf("create: %w", err))
		return
	}
	defer func() {
		if err := inst.Destroy(); err != nil {
			s.log.Warn(fmt.Sprintf("container %s: destroy: %v", name, err))
		}
	}()
	if s.stopping(u) {
		s.set(u, StateStopped, "stopped before it started")
		return
	}
	if err := inst.Start(ctx); err != nil {
		s.fail(u, fmt.Errorf("start: %w", err))
		return
	}
	s.mu.Lock()
	u.inst = inst
	u.status.Pid = inst.Pid()
	u.status.StartedAt = time.Now()
	s.mu.Unlock()
	s.set(u, StateRunning, fmt.Sprintf("started, pid %d", inst.Pid()))

	exit, err := inst.Wait(context.WithoutCancel(ctx))
	s.mu.Lock()
	u.inst = nil
	u.status.Pid = 0
	u.status.FinishedAt = time.Now()
	if err == nil {
		u.status.LastExit = &exit
	}
	stopped := u.status.State == StateStopping
	s.mu.Unlock()
	switch {
	case err != nil:
		s.fail(u, fmt.Errorf("wait: %w", err))
	case stopped:
		s.set(u, StateStopped, exit.String())
	default:
		s.set(u, StateExited, exit.String())
	}
}

// waitDependencies blocks until every dependency of u meets its condition.
// The conditions that need health or readiness arrive with the supervision
// work; until then they are treated as service_started.
func (s *Supervisor) waitDependencies(ctx context.Context, u *unit) error {
	names := make([]string, 0, len(u.m.DependsOn))
	for dep := range u.m.DependsOn {
		names = append(names, dep)
	}
	sort.Strings(names)
	for _, dep := range names {
		cond := u.m.DependsOn[dep]
		s.set(u, StateWaiting, fmt.Sprintf("waiting for %s (%s)", dep, condition(cond)))
		if err := s.waitFor(ctx, u, dep, cond); err != nil {
			if !cond.Required {
				s.log.Warn(fmt.Sprintf("container %s: optional dependency %s: %v", u.m.Name, dep, err))
				continue
			}
			return fmt.Errorf("dependency %s: %w", dep, err)
		}
	}
	return nil
}

// waitNetwork holds a container whose image comes from a registry until
// the network is online.
func (s *Supervisor) waitNetwork(ctx context.Context, u *unit) error {
	if s.opts.NetworkOnline == nil || s.opts.Remote == nil || !s.opts.Remote(u.m.Image) {
		return nil
	}
	select {
	case <-s.opts.NetworkOnline:
		return nil
	default:
	}
	s.set(u, StateWaiting, "waiting for the network to pull "+u.m.Image)
	select {
	case <-s.opts.NetworkOnline:
		return nil
	case <-u.stop:
		return errors.New("stopped while waiting for the network")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func condition(d manifest.Dependency) string {
	if d.Condition == "" {
		return "service_started"
	}
	return d.Condition
}

// waitFor waits until dependency dep of u meets cond.
func (s *Supervisor) waitFor(ctx context.Context, u *unit, dep string, cond manifest.Dependency) error {
	for {
		s.mu.Lock()
		d, ok := s.units[dep]
		if !ok {
			s.mu.Unlock()
			return errors.New("no such container")
		}
		st, changed := d.status, d.changed
		s.mu.Unlock()
		met, err := conditionMet(condition(cond), st)
		if met || err != nil {
			return err
		}
		select {
		case <-changed:
		case <-u.stop:
			return errors.New("stopped while waiting")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// conditionMet says whether a dependency in state st meets cond, or can
// never meet it.
func conditionMet(cond string, st Status) (bool, error) {
	switch cond {
	case "service_completed_successfully":
		switch st.State {
		case StateExited:
			if st.LastExit != nil && st.LastExit.Code == 0 {
				return true, nil
			}
			return false, fmt.Errorf("did not complete successfully (%s)", st.Reason)
		case StateFailed, StateInvalid, StateStopped:
			return false, fmt.Errorf("%s: %s", st.State, st.Reason)
		}
		return false, nil
	default: // service_started; healthy and ready are refined by supervision
		switch st.State {
		case StateRunning, StateExited:
			return true, nil
		case StateFailed, StateInvalid, StateStopped:
			return false, fmt.Errorf("%s: %s", st.State, st.Reason)
		}
		return false, nil
	}
}

// fail records err as u's failure and shows it on the console.
func (s *Supervisor) fail(u *unit, err error) {
	s.log.Error(fmt.Sprintf("container %s: %v", u.m.Name, err))
	s.set(u, StateFailed, firstLine(err))
}

func (s *Supervisor) stopping(u *unit) bool {
	select {
	case <-u.stop:
		return true
	default:
		return false
	}
}

// set moves u to state st for reason.
func (s *Supervisor) set(u *unit, st State, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setLocked(u, st, reason)
}

func (s *Supervisor) setLocked(u *unit, st State, reason string) {
	ev := Event{Time: time.Now(), Container: u.status.Name, From: u.status.State, To: st, Reason: reason}
	u.status.State, u.status.Reason = st, reason
	close(u.changed)
	u.changed = make(chan struct{})
	switch st {
	case StateRunning, StateExited, StateStopped:
		s.log.Info(fmt.Sprintf("container %s: %s (%s)", ev.Container, st, reason))
	default:
		s.log.Debug(fmt.Sprintf("container %s: %s (%s)", ev.Container, st, reason))
	}
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(ev)
	}
}

// Status returns a snapshot of every container, in load order.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.order))
	for _, name := range s.order {
		out = append(out, s.units[name].status)
	}
	return out
}

// Stop stops every container in reverse dependency order (a container
// stops only after those that depend on it have stopped) and waits for
// them, or until ctx ends.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	units := make(map[string]*unit, len(s.units))
	for name, u := range s.units {
		units[name] = u
	}
	s.mu.Unlock()

	dependents := map[string][]*unit{}
	for _, u := range units {
		if u.m == nil {
			continue
		}
		for dep := range u.m.DependsOn {
			dependents[dep] = append(dependents[dep], u)
		}
	}
	var wg sync.WaitGroup
	for name, u := range units {
		if u.m == nil {
			continue
		}
		wg.Add(1)
		safe.Go(s.log, "stop "+name, func() {
			defer wg.Done()
			for _, d := range dependents[name] {
				select {
				case <-d.done:
				case <-ctx.Done():
				}
			}
			s.stopUnit(ctx, u)
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); s.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-ctx.Done():
		return fmt.Errorf("stop containers: %w", ctx.Err())
	}
	s.mu.Lock()
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	return nil
}

// stopUnit asks u to stop and waits until its goroutine has finished.
func (s *Supervisor) stopUnit(ctx context.Context, u *unit) {
	s.mu.Lock()
	select {
	case <-u.stop:
	default:
		close(u.stop)
	}
	inst := u.inst
	if inst != nil {
		s.setLocked(u, StateStopping, "stop requested")
	}
	s.mu.Unlock()
	if inst != nil {
		sig, grace := stopSignal(u.m), u.m.StopGracePeriod
		if grace == 0 {
			grace = s.opts.DefaultStopGrace
		}
		if err := inst.Stop(ctx, sig, grace); err != nil {
			s.log.Warn(fmt.Sprintf("container %s: stop: %v", u.m.Name, err))
		}
	}
	select {
	case <-u.done:
	case <-ctx.Done():
	}
}

// stopSignal is the manifest's stop_signal, or 0 for the runtime's default
// (the image's STOPSIGNAL, else SIGTERM).
func stopSignal(m *manifest.Container) syscall.Signal {
	if m.StopSignal == "" {
		return 0
	}
	if n, err := strconv.Atoi(m.StopSignal); err == nil {
		return syscall.Signal(n)
	}
	name := strings.ToUpper(m.StopSignal)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	return unix.SignalNum(name) // 0 when unknown: validation rejects those
}

func firstLine(err error) string {
	s := err.Error()
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
