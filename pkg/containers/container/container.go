package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nice"
	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/containers/logs"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
	"github.com/photon-init/photon-init/pkg/containers/notify"
)

// ErrNotRunning is returned when signalling a container whose process is
// not running.
var ErrNotRunning = errors.New("container is not running")

// killWait bounds how long Stop and Destroy wait for a killed container's
// process to be gone.
const killWait = 10 * time.Second

// logDrain bounds how long the exit waits for the output pipes to drain
// after the container's first process ended.
const logDrain = 2 * time.Second

// Exit is how a container's first process ended.
type Exit struct {
	// Code is the exit status, or 128+signal when a signal killed it (as
	// shells and Docker report it); -1 when unknown.
	Code int
	// Signal is the signal that killed it, or 0.
	Signal syscall.Signal
	// OOM says that the kernel's OOM killer killed the first process:
	// it died of SIGKILL that photon-init did not send (Stop, Destroy,
	// Signal) while the cgroup's OOM kill count rose during this run.
	OOM bool
	// OOMKills is the number of the container's processes the OOM
	// killer killed during this run (the first one included); also
	// reported while it runs, through OOMEvents.
	OOMKills uint64
	// Time is when the exit was seen.
	Time time.Time
}

// String describes the exit: "exit 0", "exit 137 (SIGKILL, OOM killed)",
// "exit 1 (1 process OOM-killed)".
func (e Exit) String() string {
	s := fmt.Sprintf("exit %d", e.Code)
	var notes []string
	if e.Signal != 0 {
		notes = append(notes, unix.SignalName(e.Signal))
	}
	switch {
	case e.OOM:
		notes = append(notes, "OOM killed")
	case e.OOMKills == 1:
		notes = append(notes, "1 process OOM-killed")
	case e.OOMKills > 1:
		notes = append(notes, fmt.Sprintf("%d processes OOM-killed", e.OOMKills))
	}
	for i, n := range notes {
		if i == 0 {
			s += " (" + n
		} else {
			s += ", " + n
		}
	}
	if len(notes) > 0 {
		s += ")"
	}
	return s
}

// state is where a Container is in its life.
type state int

const (
	stateCreated state = iota
	stateRunning
	stateExited
	stateDestroyed
)

// Container is one created container: Start runs its first process once;
// to run it again, Destroy it and Create it anew (the writable layer is
// kept when the manifest is unchanged).
type Container struct {
	rt       *Runtime
	name     string
	l        *layout
	spec     *specs.Spec
	lc       *libcontainer.Container
	mode     string
	stop     syscall.Signal
	grace    time.Duration
	watchdog time.Duration
	notify   *notify.Listener // nil when a user mount took the socket's place
	oomCh    chan OOMEvent    // closed when the first process has exited
	rotation logs.Rotation    // of the log file: the runtime's, with the manifest's over it
	config   configFile       // config.json, written once it runs

	// sigkilled: photon-init sent SIGKILL (so such an exit is not an OOM
	// kill of the first process).
	sigkilled atomic.Bool

	mu      sync.Mutex
	state   state
	pid     int
	sink    *logs.Sink
	cgPaths map[string]string
	done    chan struct{} // closed when the first process has exited
	exit    Exit
	exitErr error
}

func newContainer(r *Runtime, name string, l *layout, p *plan, lc *libcontainer.Container, mode string, nl *notify.Listener) *Container {
	stop := syscall.SIGTERM
	if p.stopSignal != "" {
		if s, err := manifest.ParseSignal(p.stopSignal); err == nil {
			stop = s
		}
	}
	return &Container{
		rt: r, name: name, l: l, spec: p.spec, lc: lc, mode: mode,
		stop: stop, grace: p.stopGrace, watchdog: p.watchdog, notify: nl,
		oomCh: make(chan OOMEvent, oomEventBuffer),
		done:  make(chan struct{}),
	}
}

// Name is the container's name.
func (c *Container) Name() string { return c.name }

// Spec is the container's OCI runtime spec (do not modify it); it is also
// written to ConfigPath.
func (c *Container) Spec() *specs.Spec { return c.spec }

// ConfigPath is the container's config.json, the spec for inspection: it
// is written in the background at a low CPU priority once the container
// runs (nothing in photon-init reads it, and encoding it is not cheap
// the first time), and at once by this call when it has not been yet. A
// failure to write it is logged.
func (c *Container) ConfigPath() string {
	c.writeConfig()
	return c.l.config
}

// writeConfig writes config.json unless it has been.
func (c *Container) writeConfig() {
	if err := c.config.write(c.l.config, c.spec); err != nil {
		c.rt.log.Warn("container: config.json", "container", c.name, "err", err)
	}
}

// Rootfs is the container's root filesystem on the host.
func (c *Container) Rootfs() string { return c.l.rootfs }

// StopSignal is the signal Stop sends first: the manifest's stop_signal,
// else the image's STOPSIGNAL, else SIGTERM.
func (c *Container) StopSignal() syscall.Signal { return c.stop }

// StopGrace is how long Stop waits before it kills: the manifest's
// stop_grace_period, else DefaultStopGrace.
func (c *Container) StopGrace() time.Duration { return c.grace }

// Watchdog is the manifest's watchdog interval (WATCHDOG_USEC in the
// container's environment), or 0 when it has none or when the container
// has no notify socket. The supervisor restarts the container when no
// WATCHDOG=1 arrives within it.
func (c *Container) Watchdog() time.Duration {
	if c.notify == nil {
		return 0
	}
	return c.watchdog
}

// NotifySocket is the container's sd_notify socket on the host, or ""
// when it has none. Inside the container it is NotifySocketPath.
func (c *Container) NotifySocket() string {
	if c.notify == nil {
		return ""
	}
	return c.notify.Path()
}

// Notifications delivers what the container's processes send to
// $NOTIFY_SOCKET (READY=1, STATUS=..., WATCHDOG=1, ...; see package
// notify), from Create on. It never blocks the container: while the
// consumer is slow, messages that change no state are merged, and READY,
// RELOADING, STOPPING and WATCHDOG=trigger are kept in order. It is closed
// once the first process has exited (or its start failed, or the
// container was destroyed) and what was received before is delivered. A
// container without a socket gets a closed channel.
func (c *Container) Notifications() <-chan notify.Message {
	if c.notify == nil {
		ch := make(chan notify.Message)
		close(ch)
		return ch
	}
	return c.notify.Messages()
}

// OOMEvents reports OOM kills of the container's processes while it runs,
// the first process's own included, as the kernel counts them in the
// container's memory cgroup (cgroup v2: memory.events, watched with
// inotify; v1: memory.oom_control through an eventfd). It never blocks
// the watcher: when the buffer is full, later events carry the kills of
// dropped ones. It is closed once the first process has exited, after a
// last event for kills not reported yet. On cgroup v1 an OOM kill caused
// by the whole machine running out of memory (not by the container's
// limit) sends no notification and shows only in Exit.OOMKills.
func (c *Container) OOMEvents() <-chan OOMEvent { return c.oomCh }

// Pid is the container's first process in photon-init's PID namespace,
// or 0 when it is not running.
func (c *Container) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateRunning {
		return 0
	}
	return c.pid
}

// Done is closed when the container's first process has exited (or its
// start failed).
func (c *Container) Done() <-chan struct{} { return c.done }

// Start starts the container's first process, its stdout and stderr
// going to the container's log (file and console) and its stdin reading
// /dev/null. It returns once the process runs the container's command.
func (c *Container) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateCreated {
		return fmt.Errorf("start container %s: already started", c.name)
	}
	lo := logs.Options{
		Dir: c.rt.opts.LogDir, Console: c.rt.opts.Console, Log: c.rt.log,
		Rotation: c.rotation, ConsoleLimit: c.rt.opts.ConsoleLimit,
	}
	if f := c.rt.opts.LogDestinations; f != nil {
		lo.Destinations = f(c.name)
	}
	sink, err := logs.Open(c.name, lo)
	if err != nil {
		c.failStart(err)
		return fmt.Errorf("start container %s: %w", c.name, err)
	}
	p, err := newProcess(c.spec.Process)
	if err != nil {
		sink.Close()
		c.failStart(err)
		return fmt.Errorf("start container %s: %w", c.name, err)
	}
	p.Init = true
	var oom *oomState
	sp, err := c.startProcess(p, procIO{
		stdout: sink.Writer(logs.Stdout), stderr: sink.Writer(logs.Stderr), closeWriters: true,
		// The OOM kill count is read before the program runs: a
		// program killed at once must not be counted in the base.
		beforeExec: func() {
			if st, err := c.lc.State(); err == nil {
				c.cgPaths = st.CgroupPaths
			}
			oom = c.watchOOM()
		},
	})
	if err != nil {
		if oom != nil {
			oom.stopWatch()
		}
		sink.Close()
		c.failStart(err)
		return fmt.Errorf("start container %s: %w", c.name, err)
	}
	c.sink, c.pid, c.state = sink, sp.pid, stateRunning
	safe.Go(c.rt.log, "container "+c.name+" wait", func() { c.waitInit(sp, oom) })
	safe.Go(c.rt.log, "container "+c.name+" config.json", func() { _ = nice.Run(configNice, func() error { c.writeConfig(); return nil }) })
	return nil
}

// failStart records a start that failed before the first process ran.
// c.mu is held.
func (c *Container) failStart(err error) {
	c.state = stateExited
	c.exit, c.exitErr = Exit{Code: -1, Time: time.Now()}, err
	close(c.oomCh)
	c.closeNotify()
	close(c.done)
}

// closeNotify stops the notify socket (what it received is still
// delivered).
func (c *Container) closeNotify() {
	if c.notify == nil {
		return
	}
	if err := c.notify.Close(); err != nil {
		c.rt.log.Warn("container: close the notify socket", "container", c.name, "err", err)
	}
}

// oomState follows the OOM kills of one run of the first process.
type oomState struct {
	dir      string
	v2       bool
	base     uint64 // the count when the process started
	readable bool   // the count could be read at the start
	watch    *oomWatch
	done     chan struct{} // closed when the watcher has stopped
	reported uint64        // kills reported as events; after done, owned by waitInit
}

// watchOOM reads the cgroup's OOM kill count and starts watching it.
// c.mu is held and c.cgPaths is set.
func (c *Container) watchOOM() *oomState {
	o := &oomState{done: make(chan struct{})}
	o.dir, o.v2 = memoryCgroup(c.cgPaths)
	n, err := oomCount(o.dir, o.v2)
	if err != nil {
		c.rt.log.Debug("container: no OOM kill count (no memory cgroup?)", "container", c.name, "err", err)
		close(o.done)
		return o
	}
	o.base, o.readable = n, true
	w, err := newOOMWatch(o.dir, o.v2)
	if err != nil {
		c.rt.log.Warn("container: OOM kills will be seen only at exit", "container", c.name, "err", err)
		close(o.done)
		return o
	}
	o.watch = w
	safe.Go(c.rt.log, "container "+c.name+" OOM watch", func() {
		defer close(o.done)
		w.run(o.base, func(count uint64) { c.reportOOM(o, count) })
	})
	return o
}

// stopWatch stops the OOM watcher and waits until it has.
func (o *oomState) stopWatch() {
	if o.watch != nil {
		o.watch.file.Close()
	}
	<-o.done
}

// reportOOM sends an event for the kills counted since the last one, if
// the channel has room.
func (c *Container) reportOOM(o *oomState, count uint64) {
	total := count - o.base
	if total <= o.reported {
		return
	}
	select {
	case c.oomCh <- OOMEvent{Time: time.Now(), Kills: total - o.reported, Total: total}:
		o.reported = total
		c.rt.log.Info("container: OOM kill", "container", c.name, "total", total)
	default:
	}
}

// waitInit waits for the first process and records its exit.
func (c *Container) waitInit(sp *startedProcess, oom *oomState) {
	exit := Exit{Code: -1}
	var exitErr error
	defer func() {
		c.mu.Lock()
		c.exit, c.exitErr = exit, exitErr
		c.state = stateExited
		c.pid = 0
		c.mu.Unlock()
		c.closeNotify()
		close(c.done)
	}()
	ps, err := sp.wait()
	exit = exitOf(ps)
	if ps == nil && err != nil {
		exitErr = fmt.Errorf("wait for container %s: %w", c.name, err)
	}
	exit.OOMKills, exit.OOM = c.finishOOM(oom, exit.Signal == unix.SIGKILL && !c.sigkilled.Load())
	exit.Time = time.Now()
}

// finishOOM stops the OOM watcher, reports what it had not, closes
// OOMEvents and returns the run's kill count and whether the first
// process was the OOM killer's victim. killedUnexplained says that it
// died of a SIGKILL that photon-init did not send.
func (c *Container) finishOOM(o *oomState, killedUnexplained bool) (uint64, bool) {
	defer close(c.oomCh)
	o.stopWatch()
	if !o.readable {
		return 0, false
	}
	count, err := oomCount(o.dir, o.v2)
	// The OOM killer counts its victim just after sending it SIGKILL: a
	// victim reaped at once may be seen before its kill is counted, by
	// more than 50 ms on a loaded machine. Only a SIGKILL photon-init did
	// not send waits here, for at most oomSettleTries × oomSettleStep.
	for i := 0; killedUnexplained && (err != nil || count == o.base) && i < oomSettleTries; i++ {
		time.Sleep(oomSettleStep)
		count, err = oomCount(o.dir, o.v2)
	}
	if err != nil || count < o.base {
		return 0, false
	}
	c.reportOOM(o, count)
	kills := count - o.base
	return kills, killedUnexplained && kills > 0
}

// exitOf reads an exit from a process state.
func exitOf(ps *os.ProcessState) Exit {
	if ps == nil {
		return Exit{Code: -1}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return Exit{Code: ps.ExitCode()}
	}
	if ws.Signaled() {
		return Exit{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
	}
	return Exit{Code: ws.ExitStatus()}
}

// Wait waits until the container's first process has exited and returns
// how it ended. The error is non-nil when the exit status could not be
// had, or when ctx ended first.
func (c *Container) Wait(ctx context.Context) (Exit, error) {
	c.mu.Lock()
	created := c.state == stateCreated
	c.mu.Unlock()
	if created {
		return Exit{}, fmt.Errorf("wait for container %s: not started", c.name)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exit, c.exitErr
}

// Signal sends sig to the container's first process. SIGKILL ends the
// whole container (its PID namespace).
func (c *Container) Signal(sig syscall.Signal) error {
	c.mu.Lock()
	running := c.state == stateRunning
	c.mu.Unlock()
	if !running {
		return fmt.Errorf("signal container %s: %w", c.name, ErrNotRunning)
	}
	if sig == unix.SIGKILL {
		c.sigkilled.Store(true)
	}
	if err := c.lc.Signal(sig); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("signal container %s: %w", c.name, ErrNotRunning)
		}
		return fmt.Errorf("signal container %s: %w", c.name, err)
	}
	return nil
}

// Stop sends sig (0: StopSignal) to the container's first process and
// waits up to grace (0: StopGrace) for it to exit, then kills the
// container. A first process that has no handler for sig ignores it (the
// kernel protects a PID namespace's init), so it is killed after grace.
// When ctx ends first, the container is killed at once. Stopping a
// container that is not running does nothing.
func (c *Container) Stop(ctx context.Context, sig syscall.Signal, grace time.Duration) error {
	if sig == 0 {
		sig = c.stop
	}
	if grace <= 0 {
		grace = c.grace
	}
	if err := c.Signal(sig); err != nil {
		if errors.Is(err, ErrNotRunning) {
			return nil
		}
		return fmt.Errorf("stop: %w", err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C:
		c.rt.log.Info("container did not stop in time; killing it", "container", c.name, "signal", unix.SignalName(sig), "grace", grace)
	case <-ctx.Done():
	}
	return c.kill()
}

// kill sends SIGKILL and waits for the exit.
func (c *Container) kill() error {
	if err := c.Signal(unix.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
		return fmt.Errorf("kill: %w", err)
	}
	select {
	case <-c.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("container %s: still running %v after SIGKILL", c.name, killWait)
	}
}

// Destroy kills the container if it runs, then removes its libcontainer
// state and cgroup, its notify socket, unmounts its root filesystem and
// closes its log. The writable layer stays for a later Create (see
// Runtime.Remove).
func (c *Container) Destroy() error {
	c.mu.Lock()
	st := c.state
	if st == stateDestroyed {
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	var errs []error
	if st == stateRunning {
		if err := c.kill(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.lc.Destroy(); err != nil {
		errs = append(errs, fmt.Errorf("libcontainer destroy: %w", err))
	}
	if err := unmountAll(c.l.rootfs); err != nil {
		errs = append(errs, err)
	}
	if err := c.rt.detachNetwork(c.name); err != nil {
		errs = append(errs, err)
	}
	c.closeNotify()
	c.config.settle() // no config.json written after Destroy
	if err := os.RemoveAll(c.l.notifyDir); err != nil {
		errs = append(errs, fmt.Errorf("remove the notify socket: %w", err))
	}
	c.mu.Lock()
	if c.sink != nil {
		if err := c.sink.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	c.state = stateDestroyed
	c.mu.Unlock()
	c.rt.forget(c.name, c)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroy container %s: %w", c.name, err)
	}
	return nil
}

// newProcess converts an OCI process to a libcontainer one.
func newProcess(p *specs.Process) (*libcontainer.Process, error) {
	nnp := p.NoNewPrivileges
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		NoNewPrivileges: &nnp,
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable,
			Permitted: c.Permitted, Ambient: c.Ambient,
		}
	}
	for _, r := range p.Rlimits {
		name, _ := strings.CutPrefix(r.Type, "RLIMIT_")
		res, ok := rlimits[strings.ToLower(name)]
		if !ok {
			return nil, fmt.Errorf("rlimit %s: unknown", r.Type)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: res, Hard: r.Hard, Soft: r.Soft})
	}
	return lp, nil
}
