package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/containers/logs"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
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
	// OOM says that the kernel's OOM killer killed a process of the
	// container (the cgroup's oom_kill count is not zero).
	OOM bool
	// Time is when the exit was seen.
	Time time.Time
}

// String describes the exit: "exit 0", "exit 137 (SIGKILL, OOM killed)".
func (e Exit) String() string {
	s := fmt.Sprintf("exit %d", e.Code)
	var notes []string
	if e.Signal != 0 {
		notes = append(notes, unix.SignalName(e.Signal))
	}
	if e.OOM {
		notes = append(notes, "OOM killed")
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
	rt    *Runtime
	name  string
	l     *layout
	spec  *specs.Spec
	lc    *libcontainer.Container
	mode  string
	stop  syscall.Signal
	grace time.Duration

	mu      sync.Mutex
	state   state
	pid     int
	sink    *logs.Sink
	cgPaths map[string]string
	done    chan struct{} // closed when the first process has exited
	exit    Exit
	exitErr error
}

func newContainer(r *Runtime, name string, l *layout, p *plan, lc *libcontainer.Container, mode string) *Container {
	stop := syscall.SIGTERM
	if p.stopSignal != "" {
		if s, err := manifest.ParseSignal(p.stopSignal); err == nil {
			stop = s
		}
	}
	return &Container{
		rt: r, name: name, l: l, spec: p.spec, lc: lc, mode: mode,
		stop: stop, grace: p.stopGrace,
		done: make(chan struct{}),
	}
}

// Name is the container's name.
func (c *Container) Name() string { return c.name }

// Spec is the container's OCI runtime spec (do not modify it); it is also
// written to ConfigPath.
func (c *Container) Spec() *specs.Spec { return c.spec }

// ConfigPath is where the container's config.json was written.
func (c *Container) ConfigPath() string { return c.l.config }

// Rootfs is the container's root filesystem on the host.
func (c *Container) Rootfs() string { return c.l.rootfs }

// StopSignal is the signal Stop sends first: the manifest's stop_signal,
// else the image's STOPSIGNAL, else SIGTERM.
func (c *Container) StopSignal() syscall.Signal { return c.stop }

// StopGrace is how long Stop waits before it kills: the manifest's
// stop_grace_period, else DefaultStopGrace.
func (c *Container) StopGrace() time.Duration { return c.grace }

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
	lo := logs.Options{Dir: c.rt.opts.LogDir, Console: c.rt.opts.Console, Log: c.rt.log}
	if f := c.rt.opts.LogDestinations; f != nil {
		lo.Destinations = f(c.name)
	}
	sink, err := logs.Open(c.name, lo)
	if err != nil {
		return fmt.Errorf("start container %s: %w", c.name, err)
	}
	p, err := newProcess(c.spec.Process)
	if err != nil {
		sink.Close()
		return fmt.Errorf("start container %s: %w", c.name, err)
	}
	p.Init = true
	pid, wait, err := c.startProcess(p, sink)
	if err != nil {
		sink.Close()
		c.state = stateExited
		c.exit, c.exitErr = Exit{Code: -1, Time: time.Now()}, err
		close(c.done)
		return fmt.Errorf("start container %s: %w", c.name, err)
	}
	if st, err := c.lc.State(); err == nil {
		c.cgPaths = st.CgroupPaths
	}
	c.sink, c.pid, c.state = sink, pid, stateRunning
	safe.Go(c.rt.log, "container "+c.name+" wait", func() { c.waitInit(wait) })
	return nil
}

// startProcess starts p in the container, through the reaper, with its
// output piped into sink. It returns the pid and a function that waits
// for the process (then releases it to the reaper) and for its output to
// drain. Exec (a later issue) starts further processes the same way.
func (c *Container) startProcess(p *libcontainer.Process, sink *logs.Sink) (int, func() (*os.ProcessState, error), error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return 0, nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return 0, nil, fmt.Errorf("stderr pipe: %w", err)
	}
	p.Stdout, p.Stderr = outW, errW // *os.File: no copying goroutines in os/exec
	var pid int
	run := c.lc.Start
	if p.Init {
		run = c.lc.Run
	}
	err = c.rt.opts.Reaper.Exclusive(func() ([]int, error) {
		err := run(p)
		if n, perr := p.Pid(); perr == nil && n > 0 {
			pid = n
			return []int{n}, err
		}
		return nil, err
	})
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		if pid > 0 {
			// Whatever libcontainer left of it: wait, then release.
			safe.Go(c.rt.log, "container "+c.name+" failed start", func() {
				_, _ = p.Wait()
				c.rt.opts.Reaper.Release(pid)
			})
		}
		return 0, nil, err
	}
	var drained sync.WaitGroup
	for _, s := range []struct {
		r      *os.File
		stream logs.Stream
	}{{outR, logs.Stdout}, {errR, logs.Stderr}} {
		drained.Add(1)
		safe.Go(c.rt.log, "container "+c.name+" "+string(s.stream), func() {
			defer drained.Done()
			w := sink.Writer(s.stream)
			_, _ = io.Copy(w, s.r)
			w.Close()
			s.r.Close()
		})
	}
	wait := func() (*os.ProcessState, error) {
		ps, err := p.Wait()
		c.rt.opts.Reaper.Release(pid)
		// In its own PID namespace every process of the container is
		// gone with the first one; something that still holds the
		// pipes (a process outside the namespace) must not hold us.
		ch := make(chan struct{})
		go func() { drained.Wait(); close(ch) }()
		select {
		case <-ch:
		case <-time.After(logDrain):
			c.rt.log.Warn("container: output still open after the process ended; not waiting for it", "container", c.name)
		}
		return ps, err
	}
	return pid, wait, nil
}

// waitInit waits for the first process and records its exit.
func (c *Container) waitInit(wait func() (*os.ProcessState, error)) {
	exit := Exit{Code: -1}
	var exitErr error
	defer func() {
		c.mu.Lock()
		c.exit, c.exitErr = exit, exitErr
		c.state = stateExited
		c.pid = 0
		c.mu.Unlock()
		close(c.done)
	}()
	ps, err := wait()
	exit = exitOf(ps)
	if ps == nil && err != nil {
		exitErr = fmt.Errorf("wait for container %s: %w", c.name, err)
	}
	exit.OOM = c.oomKilled()
	exit.Time = time.Now()
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

// oomKilled reports whether the container's cgroup counted an OOM kill.
func (c *Container) oomKilled() bool {
	cfg := c.lc.Config()
	if cfg.Cgroups == nil || len(c.cgPaths) == 0 {
		return false
	}
	m, err := manager.NewWithPaths(cfg.Cgroups, c.cgPaths)
	if err != nil {
		return false
	}
	n, err := m.OOMKillCount()
	return err == nil && n > 0
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
// state and cgroup, unmounts its root filesystem and closes its log. The
// writable layer stays for a later Create (see Runtime.Remove).
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
