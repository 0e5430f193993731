// Package supervisor runs the machine's declared containers and keeps them
// running: it gets each container's image, creates and starts the
// containers in dependency order (independent ones in parallel), restarts
// them by their restart policy with a capped exponential backoff, runs
// their health checks, follows their sd_notify messages (readiness,
// status, watchdog), keeps each container's state with the reason for it
// as a stream of events, applies manifest changes while running
// (Reconcile), and stops them in reverse dependency order.
//
// A bad manifest, a missing image or a container that fails to start is
// that container's state; it never stops the others, and a crash-looping
// container never slows the others down: every container has its own
// goroutine, and all waiting is on timers and channels.
//
// The supervisor is written against three small interfaces (Images,
// Runtime, Instance) so that image stores and runtimes stay apart from the
// policy that drives them, as Talos' machined keeps runners apart from
// services. Time comes from a clockwork.Clock, so that tests drive the
// backoff, health and watchdog timers with a fake clock.
//
// # Rules
//
// Restart policies have Compose's meaning: "no" never restarts; "always"
// and "unless-stopped" restart whatever the exit status (the two differ in
// Docker only across daemon restarts; here a container stopped by
// StopContainer stays stopped under both until StartContainer or a
// manifest change); "on-failure[:N]" restarts after a failure, at most N
// times in a row when N is given. A failure is a non-zero exit status, a
// container that could not be prepared or started, an unhealthy container
// and a watchdog timeout.
//
// Restarts wait RestartDelay (100ms), doubled after each restart up to
// MaxRestartDelay (30s); a run of at least StableRun (10s) resets the
// delay and the on-failure count.
//
// A container that becomes unhealthy is stopped (stop_signal, then
// stop_grace_period, then SIGKILL) and restarted when its restart policy
// would restart it after a failure (always, unless-stopped, on-failure
// with retries left); under "no" it keeps running, shown unhealthy.
// Docker never restarts unhealthy containers; photon-init does, because
// nobody is watching the machine.
//
// A container with a watchdog (manifest.Container.Watchdog) that sends no
// WATCHDOG=1 within that interval of its start, of its READY=1 or of its
// last WATCHDOG=1 is killed (SIGKILL) and then restarted by its policy,
// as systemd does.
//
// A dependency that can no longer meet its condition (an invalid
// manifest, a container failed for good or stopped, one that exited
// without meeting the condition, service_healthy on a container without
// a health check) fails the dependent with a reason naming it, unless
// the dependency has required: false. A dependency that is backing off
// or otherwise on its way keeps the dependent waiting, the dependency's
// state shown in the dependent's reason. A dependency with restart: true
// restarts the dependent whenever the dependency is restarted.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
	"github.com/photon-init/photon-init/pkg/containers/notify"
)

// Images gives unpacked images by reference.
type Images interface {
	Get(ctx context.Context, ref string) (*image.Image, error)
}

// Runtime creates containers from a manifest and an unpacked image. ctx
// bounds the call only (it is cancelled when a stop is asked while the
// container is being created), never the container's life. Creating a
// container again from an unchanged manifest keeps its writable layer.
type Runtime interface {
	Create(ctx context.Context, m *manifest.Container, img *image.Image) (Instance, error)
}

// Instance is one created container. The supervisor calls Start once,
// Wait once (from its own goroutine), Stop any number of times (also
// after the exit), Exec while it runs, and Destroy once at the end.
type Instance interface {
	// Start starts the container's process. ctx bounds the call only.
	Start(ctx context.Context) error
	// Wait blocks until the container's process has exited.
	Wait(ctx context.Context) (Exit, error)
	// Done is closed once the container's process has exited (or its
	// start failed): Wait then returns at once. The supervisor waits on
	// it beside its other events, with no goroutine of its own.
	Done() <-chan struct{}
	// Stop sends sig (0: the image's STOPSIGNAL, else SIGTERM), waits up
	// to grace (0: the runtime's default) for the exit, then kills. When
	// ctx ends first it kills at once. Stopping a container that is not
	// running does nothing.
	Stop(ctx context.Context, sig syscall.Signal, grace time.Duration) error
	// Destroy releases everything the container holds, killing it if it
	// still runs.
	Destroy() error
	// Pid is the container's first process as seen by the supervisor.
	Pid() int
	// Exec runs argv inside the running container (its namespaces,
	// cgroup, user, environment and working directory) with no stdin,
	// and returns its exit status and its combined stdout and stderr
	// (the runtime may cut the output; the supervisor keeps at most 4
	// KiB). A command still running after timeout is killed and err
	// wraps context.DeadlineExceeded; err is also set when the command
	// could not be started. Health checks run through Exec.
	Exec(ctx context.Context, argv []string, timeout time.Duration) (code int, output []byte, err error)
	// Notifications gives the sd_notify messages the container sends to
	// $NOTIFY_SOCKET, one Notification per datagram, or nil when the
	// runtime offers none. The runtime must never block on it (buffer
	// and drop); it may close it after the exit.
	Notifications() <-chan Notification
}

// Notification is one sd_notify message (a datagram on $NOTIFY_SOCKET,
// as go-systemd's daemon.SdNotify sends it) as package notify parses it,
// so that the runtime's messages reach the supervisor as they are, with
// no goroutine to convert them. The supervisor acts on Ready (READY=1),
// Stopping (STOPPING=1), Reloading (RELOADING=1), Watchdog (WATCHDOG=1, a
// keep-alive ping), WatchdogTrigger (WATCHDOG=trigger: handled as if the
// watchdog had expired), WatchdogTimeout (WATCHDOG_USEC=: the watchdog
// interval from now on, which also starts a watchdog for a container
// without one) and a non-empty Status (STATUS=...).
type Notification = notify.Message

// Exit is how a container's process ended.
type Exit struct {
	Code   int    `json:"code"`             // exit status, or 128+signal when killed
	Signal string `json:"signal,omitempty"` // signal name when killed, else ""
	OOM    bool   `json:"oom,omitempty"`    // killed by the kernel's OOM killer
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
	StateWaiting   State = "waiting"   // for its dependencies or the network
	StatePreparing State = "preparing" // getting its image, creating it
	StateRunning   State = "running"
	StateBackoff   State = "backoff"  // waiting to be restarted
	StateExited    State = "exited"   // its process ended by itself, not restarted
	StateFailed    State = "failed"   // it could not be run, and will not be retried
	StateStopping  State = "stopping" // asked to stop, or being restarted
	StateStopped   State = "stopped"  // stopped on request
)

// HealthStatus is the result of a container's health checks.
type HealthStatus string

// Health statuses, as Docker names them.
const (
	HealthStarting  HealthStatus = "starting"
	HealthHealthy   HealthStatus = "healthy"
	HealthUnhealthy HealthStatus = "unhealthy"
)

// Health is the state of a running container's health check.
type Health struct {
	Status HealthStatus `json:"status"`
	// FailingStreak counts the failed probes in a row that counted
	// (those in the start period do not).
	FailingStreak int `json:"failingStreak"`
	// LastOutput is the last probe's output (at most 4 KiB) or why it
	// could not run.
	LastOutput   string    `json:"lastOutput,omitempty"`
	LastExitCode int       `json:"lastExitCode"` // -1 when the probe could not run or timed out
	LastProbe    time.Time `json:"lastProbe,omitzero"`
}

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
	// Restarts counts the times the container was started again since
	// its manifest was loaded (by its policy, on request, or because a
	// dependency restarted).
	Restarts int `json:"restarts"`
	// NextStart is when a container backing off starts again.
	NextStart time.Time `json:"nextStart,omitzero"`
	// Health is nil when the container has no health check (or has not
	// run yet).
	Health *Health `json:"health,omitempty"`
	// Ready: the container sent READY=1 since it last started.
	Ready bool `json:"ready,omitempty"`
	// NotifyStatus is the last STATUS= the container sent.
	NotifyStatus string `json:"notifyStatus,omitempty"`
	// LastWatchdog is when the container last sent WATCHDOG=1.
	LastWatchdog time.Time `json:"lastWatchdog,omitzero"`
	// ManifestError is set when the manifest on disk was changed into
	// one that does not validate: the container keeps running the
	// previous version.
	ManifestError string `json:"manifestError,omitempty"`
}

// Event is one state change. Health changes and the other changes of a
// running container's condition (ready, reloading) are events with the
// same From and To.
type Event struct {
	Seq       uint64    `json:"seq"` // increases by one with every event
	Time      time.Time `json:"time"`
	Container string    `json:"container"`
	From      State     `json:"from"`
	To        State     `json:"to"`
	Reason    string    `json:"reason,omitempty"`
}

// Options configure a Supervisor. Zero values take the defaults given.
type Options struct {
	Images  Images
	Runtime Runtime
	Log     *slog.Logger
	// DefaultStopGrace is used when a manifest sets no stop_grace_period
	// (10s).
	DefaultStopGrace time.Duration
	// NetworkOnline, if set, is closed once the machine's network is
	// online: containers that depend on network-online wait for it, and
	// images for which Remote says true are not fetched before. Nil means
	// the network is taken as online.
	NetworkOnline <-chan struct{}
	// Remote reports whether an image reference is fetched over the
	// network (a registry reference); nil means none is.
	Remote func(ref string) bool
	// OnEvent, if set, is called for every event with the supervisor's
	// lock held: it must return quickly and must not call the
	// Supervisor. Subscribe is the better way to follow events.
	OnEvent func(Event)
	// Clock gives the time and the timers (nil: the real clock).
	Clock clockwork.Clock
	// RestartDelay is the wait before the first restart (100ms); each
	// restart in a row doubles it, up to MaxRestartDelay (30s).
	RestartDelay    time.Duration
	MaxRestartDelay time.Duration
	// StableRun is how long a container must run for the restart delay
	// and the on-failure count to start again from the beginning (10s).
	StableRun time.Duration
	// EventHistory is how many events Events keeps (1000).
	EventHistory int
	// SubscriberBuffer is how many events a subscriber may fall behind
	// before events are dropped for it (256).
	SubscriberBuffer int
}

// Supervisor runs a set of containers.
type Supervisor struct {
	opts  Options
	log   *slog.Logger
	clock clockwork.Clock

	reconcileMu sync.Mutex // one Reconcile at a time

	mu       sync.Mutex
	ctx      context.Context // the containers' context, set by Start
	cancel   context.CancelFunc
	shutdown bool // Stop was called: nothing starts any more
	units    map[string]*unit
	order    []string // names in load order
	events   eventLog
	wg       sync.WaitGroup // the containers' goroutines
}

// New returns a supervisor; Start gives it containers.
func New(opts Options) *Supervisor {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.DefaultStopGrace <= 0 {
		opts.DefaultStopGrace = 10 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.RestartDelay <= 0 {
		opts.RestartDelay = 100 * time.Millisecond
	}
	if opts.MaxRestartDelay <= 0 {
		opts.MaxRestartDelay = 30 * time.Second
	}
	opts.MaxRestartDelay = max(opts.MaxRestartDelay, opts.RestartDelay)
	if opts.StableRun <= 0 {
		opts.StableRun = 10 * time.Second
	}
	if opts.EventHistory <= 0 {
		opts.EventHistory = 1000
	}
	if opts.SubscriberBuffer <= 0 {
		opts.SubscriberBuffer = 256
	}
	return &Supervisor{
		opts: opts, log: opts.Log, clock: opts.Clock,
		units:  map[string]*unit{},
		events: newEventLog(opts.EventHistory),
	}
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
// in the background until Stop is called. Cancelling ctx kills them (Stop
// is the orderly way). Start is called once; later changes go through
// Reconcile.
func (s *Supervisor) Start(ctx context.Context, cs []*manifest.Container, invalid []Invalid) {
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx != nil {
		cancel()
		s.log.Error("containers: supervisor started twice; use Reconcile")
		return
	}
	s.ctx, s.cancel = ctx, cancel
	for _, bad := range invalid {
		s.addInvalidLocked(bad)
	}
	for _, m := range cs {
		if u, dup := s.units[m.Name]; dup {
			s.log.Error(fmt.Sprintf("container %s: %s: name already used by %s", m.Name, m.File, u.status.File))
			continue
		}
		s.launchLocked(s.addLocked(m), "manifest loaded")
	}
}

// addLocked adds a unit for a valid manifest, not started.
func (s *Supervisor) addLocked(m *manifest.Container) *unit {
	u := &unit{m: m, status: Status{Name: m.Name, File: m.File, Image: m.Image}, changed: make(chan struct{})}
	s.units[m.Name] = u
	s.order = append(s.order, m.Name)
	return u
}

// addInvalidLocked adds a unit for a manifest that could not be loaded.
func (s *Supervisor) addInvalidLocked(bad Invalid) *unit {
	u := &unit{status: Status{Name: bad.Name, File: bad.File}, changed: make(chan struct{})}
	s.units[bad.Name] = u
	s.order = append(s.order, bad.Name)
	s.log.Error(fmt.Sprintf("container %s: %v", bad.Name, bad.Err))
	s.setLocked(u, StateInvalid, firstLine(bad.Err))
	return u
}

// Status returns a snapshot of every container, in load order.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.order))
	for _, name := range s.order {
		out = append(out, s.units[name].snapshot())
	}
	return out
}

// Instance returns the running instance of container name (for exec
// through the control socket), or false when it does not run.
func (s *Supervisor) Instance(name string) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.units[name]
	if u == nil || u.inst == nil {
		return nil, false
	}
	return u.inst, true
}

// Stop stops every container in reverse dependency order (a container
// stops only after those that depend on it have stopped, whether they run,
// back off or wait) and waits for them, or until ctx ends: then the
// containers still running are killed. Nothing starts after Stop.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	var units []*unit
	for _, name := range s.order {
		if u := s.units[name]; u.m != nil {
			units = append(units, u)
		}
	}
	s.mu.Unlock()

	s.stopInOrder(ctx, units, stopRequest{why: "shutdown"})
	finished := make(chan struct{})
	safe.Go(s.log, "containers stopped", func() { s.wg.Wait(); close(finished) })
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

// stopInOrder stops units, each after the units among them that depend
// on it, and returns when all have stopped or ctx has ended.
func (s *Supervisor) stopInOrder(ctx context.Context, units []*unit, req stopRequest) {
	stopped := make(map[string]chan struct{}, len(units))
	dependents := map[string][]string{}
	s.mu.Lock()
	for _, u := range units {
		name := u.status.Name
		stopped[name] = make(chan struct{})
		ms := []*manifest.Container{u.m}
		if u.life != nil && u.life.m != u.m {
			ms = append(ms, u.life.m) // the one running may be older
		}
		for _, m := range ms {
			if m == nil {
				continue
			}
			for dep := range m.DependsOn {
				dependents[dep] = append(dependents[dep], name)
			}
			if net := m.NetworkContainer(); net != "" {
				dependents[net] = append(dependents[net], name)
			}
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, u := range units {
		name := u.status.Name
		wg.Add(1)
		safe.Go(s.log, "stop "+name, func() {
			defer wg.Done()
			defer close(stopped[name])
			for _, d := range dependents[name] {
				select {
				case <-stopped[d]:
				case <-ctx.Done():
				}
			}
			s.stopUnit(ctx, u, req)
		})
	}
	wg.Wait()
}

// ErrNotFound is returned for a container name the supervisor does not
// know.
var ErrNotFound = errors.New("no such container")

// StopContainer stops one container (stop_signal, stop_grace_period,
// SIGKILL; those that depend on it are left alone) and waits until it has
// stopped or ctx has ended. It stays stopped until StartContainer,
// RestartContainer or a change of its manifest.
func (s *Supervisor) StopContainer(ctx context.Context, name string) error {
	s.mu.Lock()
	u := s.units[name]
	s.mu.Unlock()
	if u == nil {
		return fmt.Errorf("stop %s: %w", name, ErrNotFound)
	}
	s.stopUnit(ctx, u, stopRequest{why: "stop requested"})
	return ctx.Err()
}

// StartContainer starts a container that is not running (stopped, exited
// or failed), its restart count and backoff starting afresh. Starting one
// that is already under way does nothing.
func (s *Supervisor) StartContainer(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.units[name]
	switch {
	case u == nil:
		return fmt.Errorf("start %s: %w", name, ErrNotFound)
	case u.m == nil:
		return fmt.Errorf("start %s: invalid manifest: %s", name, u.status.Reason)
	case s.shutdown:
		return fmt.Errorf("start %s: the machine is shutting down", name)
	case u.alive():
		return nil
	}
	u.status.Restarts = 0
	s.launchLocked(u, "start requested")
	s.retryFailedLocked([]string{name})
	return nil
}

// RestartContainer restarts a container: a running one is stopped
// (stop_signal, stop_grace_period, SIGKILL) and started again, one backing
// off starts at once, one waiting goes on waiting, and one not under way is
// started. It returns without waiting. Containers that depend on it with
// restart: true are restarted too.
func (s *Supervisor) RestartContainer(name string) error {
	s.mu.Lock()
	u := s.units[name]
	running := u != nil && u.alive()
	if running {
		select {
		case u.life.restart <- restartRequest{why: "restart requested", operator: true}:
		default: // one is pending already
		}
	}
	s.mu.Unlock()
	if running {
		return nil
	}
	return s.StartContainer(name)
}

// stopSignal is the manifest's stop_signal, or 0 for the runtime's default
// (the image's STOPSIGNAL, else SIGTERM).
func stopSignal(m *manifest.Container) syscall.Signal {
	if m.StopSignal == "" {
		return 0
	}
	sig, err := manifest.ParseSignal(m.StopSignal)
	if err != nil {
		return 0 // validation rejects those
	}
	return sig
}

// firstLine is the first line of err's message.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
