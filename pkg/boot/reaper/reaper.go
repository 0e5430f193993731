package reaper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultSweepInterval is how often Run reaps without having been told to,
// as a safety net, when Options.SweepInterval is 0.
const DefaultSweepInterval = 10 * time.Second

// batchSize is how many children one hold of the lock reaps at most.
const batchSize = 128

// Options configure a Reaper.
type Options struct {
	// Log receives panics (error), unusual conditions (warn) and every
	// reaped orphan (debug). Nil discards.
	Log *slog.Logger
	// SweepInterval is the period of the safety-net pass; 0 means
	// DefaultSweepInterval, a negative value turns the sweep off.
	SweepInterval time.Duration
	// Subreaper makes Run call BecomeSubreaper first when this process is
	// not PID 1.
	Subreaper bool
}

// Stats are counters of a Reaper since New.
type Stats struct {
	// Orphans is the number of reaped processes that nobody had registered.
	Orphans uint64
	// Delivered is the number of exit statuses delivered to Handles.
	Delivered uint64
	// Passes is the number of reaping passes.
	Passes uint64
	// SlowPasses is the number of times a self-waited zombie came first and
	// the children had to be listed.
	SlowPasses uint64
	// SweepReaped is the number of processes reaped by the periodic sweep:
	// zombies that SIGCHLD alone did not get to. It should stay 0.
	SweepReaped uint64
	// Panics is the number of panics recovered in Run.
	Panics uint64
	// Pending is the number of Handles whose child is not reaped yet.
	Pending int
	// SelfWaited is the number of pids registered by Exclusive and not
	// released yet.
	SelfWaited int
}

// Reaper reaps the children of this process without taking the exit status
// of a child that someone else waits for. See the package documentation.
type Reaper struct {
	log   *slog.Logger
	sweep time.Duration
	sub   bool

	// mu is the lock that forking (Spawn, Exclusive) and reaping share.
	mu sync.Mutex
	// buf is the read buffer of the children listing; guarded by mu.
	buf []byte

	// reg guards the registrations. It is separate from mu so that Release
	// can be called while mu is held (inside Exclusive's function).
	reg        sync.Mutex
	handles    map[int]*Handle
	selfWaited map[int]int // pid → number of registrations not released

	kick      chan struct{}
	running   atomic.Bool
	warnedEnm atomic.Bool

	orphans, delivered, passes, slowPasses, sweepReaped, panics atomic.Uint64

	// beforeBatch, when set by a test, runs at the start of each batch with
	// the lock held.
	beforeBatch func()
}

// New returns a Reaper. It reaps when Run runs, or when Reap is called.
func New(opts Options) *Reaper {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sweep := opts.SweepInterval
	if sweep == 0 {
		sweep = DefaultSweepInterval
	}
	return &Reaper{
		log:        log,
		sweep:      sweep,
		sub:        opts.Subreaper,
		handles:    make(map[int]*Handle),
		selfWaited: make(map[int]int),
		kick:       make(chan struct{}, 1),
	}
}

// Run reaps on every SIGCHLD, after every Release, and every sweep interval,
// until ctx ends; then it returns nil. A panic in a pass is logged and
// counted and Run goes on. It returns an error at once if another Run of
// this Reaper is running or if becoming a subreaper fails.
func (r *Reaper) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("reaper: Run is already running")
	}
	defer r.running.Store(false)
	if r.sub && os.Getpid() != 1 {
		if err := BecomeSubreaper(); err != nil {
			return err
		}
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, unix.SIGCHLD)
	defer signal.Stop(sigc)
	var tick <-chan time.Time
	if r.sweep > 0 {
		t := time.NewTicker(r.sweep)
		defer t.Stop()
		tick = t.C
	}
	r.safePass()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sigc:
			r.safePass()
		case <-r.kick:
			r.safePass()
		case <-tick:
			if n := r.safePass(); n > 0 {
				r.sweepReaped.Add(uint64(n))
				r.log.Debug("reaper: the periodic sweep reaped what SIGCHLD did not", "count", n)
			}
		}
	}
}

// safePass is Reap with a panic turned into a log line.
func (r *Reaper) safePass() (n int) {
	defer func() {
		if p := recover(); p != nil {
			r.panics.Add(1)
			r.log.Error(fmt.Sprintf("reaper: panic in a reaping pass (reaping goes on): %v\n%s", p, debug.Stack()))
		}
	}()
	return r.Reap()
}

// Reap runs one reaping pass now: it reaps every exited child that is not
// self-waited, delivering statuses to their Handles, and returns how many it
// reaped. Run calls it; callers that do not run Run (or that want a zombie
// gone now, as the shutdown does) may call it directly.
func (r *Reaper) Reap() int {
	r.passes.Add(1)
	total := 0
	for {
		n, more := r.reapBatch()
		total += n
		if !more {
			return total
		}
	}
}

// reapBatch reaps up to batchSize children with the lock held. more is true
// when it stopped only because the batch was full.
func (r *Reaper) reapBatch() (n int, more bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.beforeBatch != nil {
		r.beforeBatch()
	}
	for n < batchSize {
		pid, err := peekZombie()
		if err != nil {
			if err != unix.ECHILD {
				r.log.Warn("reaper: waitid failed", "err", err)
			}
			return n, false // ECHILD: no children at all
		}
		if pid == 0 {
			return n, false
		}
		if !r.isSelfWaited(pid) {
			e, ok := reapPid(pid)
			if !ok {
				// Reaped by someone who did not register it: nothing to
				// do, and peeking again could spin.
				r.log.Debug("reaper: an exited child vanished before wait4", "pid", pid)
				return n, false
			}
			r.dispatch(e)
			n++
			continue
		}
		// The first zombie is someone else's, and waitid cannot look past
		// it: list the children and reap the others one by one.
		k := r.reapListed()
		n += k
		if k == 0 {
			return n, false
		}
	}
	return n, true
}

// reapListed is the slow path: wait4 each listed child that is not
// self-waited. Lock held.
func (r *Reaper) reapListed() int {
	r.slowPasses.Add(1)
	pids, err := children(&r.buf)
	if err != nil {
		if !r.warnedEnm.Swap(true) {
			r.log.Warn("reaper: cannot list children; zombies queued behind a self-waited one wait for its owner", "err", err)
		}
		return 0
	}
	n := 0
	for _, pid := range pids {
		if r.isSelfWaited(pid) {
			continue
		}
		if e, ok := reapPid(pid); ok {
			r.dispatch(e)
			n++
		}
	}
	return n
}

// isSelfWaited reports whether pid is registered by Exclusive and must not be
// reaped. A Handle wins over a self-waited registration: the Handle's child
// is alive or a zombie, so it holds the pid, and a self-waited registration
// of the same pid can only be a stale one whose owner has waited but not
// released yet.
func (r *Reaper) isSelfWaited(pid int) bool {
	r.reg.Lock()
	defer r.reg.Unlock()
	if _, ok := r.handles[pid]; ok {
		return false
	}
	return r.selfWaited[pid] > 0
}

// dispatch hands a reaped child's status to its Handle, or counts an
// orphan. Lock held.
func (r *Reaper) dispatch(e Exit) {
	r.reg.Lock()
	h := r.handles[e.Pid]
	delete(r.handles, e.Pid)
	r.reg.Unlock()
	if h == nil {
		r.orphans.Add(1)
		r.log.Debug("reaper: reaped orphan", "pid", e.Pid, "status", e.String())
		return
	}
	h.exit = e
	close(h.reaped)
	r.delivered.Add(1)
}

// Spawn runs start with the lock held and registers the pid it returns, so
// that the reaper delivers that child's exit status to the returned Handle,
// even if the child exits before start returns. start must create exactly
// one child that nobody else waits for, and must not call Spawn, Start,
// Exclusive or Handle.Signal.
func (r *Reaper) Spawn(start func() (pid int, err error)) (*Handle, error) {
	h := &Handle{r: r, reaped: make(chan struct{})}
	h.done = h.reaped
	if err := r.spawn(h, start); err != nil {
		return nil, fmt.Errorf("reaper: spawn: %w", err)
	}
	return h, nil
}

// spawn runs start and registers h under its pid, lock held.
func (r *Reaper) spawn(h *Handle, start func() (int, error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return err
	}
	if pid <= 0 {
		return fmt.Errorf("start returned pid %d", pid)
	}
	h.pid = pid
	r.reg.Lock()
	r.handles[pid] = h
	r.reg.Unlock()
	return nil
}

// Start starts cmd (cmd.Start with the lock held) as a reaper-waited child.
// Handle.Wait then returns once the child is reaped and, like Cmd.Wait, once
// the goroutines that copy a non-*os.File Stdin, Stdout or Stderr are done
// (subject to cmd.WaitDelay) and the pipes are closed. cmd.Wait must not be
// called, cmd.ProcessState stays nil, and cmd.Process is released once the
// child is reaped (its Pid then reads -1; use Handle.Pid). An I/O copying
// error is not reported.
func (r *Reaper) Start(cmd *exec.Cmd) (*Handle, error) {
	h := &Handle{r: r, reaped: make(chan struct{}), done: make(chan struct{})}
	err := r.spawn(h, func() (int, error) {
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	})
	if err != nil {
		return nil, fmt.Errorf("reaper: start %s: %w", cmd.Path, err)
	}
	go func() {
		defer close(h.done)
		defer func() {
			if p := recover(); p != nil {
				r.panics.Add(1)
				r.log.Error(fmt.Sprintf("reaper: panic finishing %s (pid %d): %v\n%s", cmd.Path, h.pid, p, debug.Stack()))
			}
		}()
		<-h.reaped
		// A released Process makes Cmd.Wait skip waiting for the process
		// (it returns EINVAL without a system call, so a reused pid is
		// never waited for) and still collect the I/O goroutines and
		// close the pipes.
		_ = cmd.Process.Release()
		_ = cmd.Wait()
	}()
	return h, nil
}

// Exclusive runs fn with the lock held, so that nothing is reaped while it
// runs: children that fn forks and waits for itself are safe. The pids fn
// returns (with or without an error; pids ≤ 0 are ignored) are then
// registered as self-waited: the reaper never waits for them, their owner
// does and then calls Release for each. fn's error is returned, wrapped. fn
// must not call Spawn, Start, Exclusive or Handle.Signal.
func (r *Reaper) Exclusive(fn func() (pids []int, err error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	pids, err := fn()
	r.reg.Lock()
	for _, pid := range pids {
		if pid > 0 {
			r.selfWaited[pid]++
		}
	}
	r.reg.Unlock()
	if err != nil {
		return fmt.Errorf("reaper: exclusive: %w", err)
	}
	return nil
}

// Release ends one self-waited registration of pid, made by Exclusive. Call
// it as soon as the child has been waited for: until then an unrelated
// orphan that happens to get the same pid is not reaped either (a Handle's
// child with that pid is). If the child has not been waited for, the reaper
// reaps it as an orphan. Releasing a pid that is not registered does
// nothing. Release may be called anywhere, even inside Exclusive's function.
func (r *Reaper) Release(pid int) {
	r.reg.Lock()
	switch c := r.selfWaited[pid]; {
	case c > 1:
		r.selfWaited[pid] = c - 1
	case c == 1:
		delete(r.selfWaited, pid)
	}
	r.reg.Unlock()
	// A zombie left behind may have queued others, whose SIGCHLD is spent.
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Stats returns the counters.
func (r *Reaper) Stats() Stats {
	r.reg.Lock()
	pending, self := len(r.handles), len(r.selfWaited)
	r.reg.Unlock()
	return Stats{
		Orphans:     r.orphans.Load(),
		Delivered:   r.delivered.Load(),
		Passes:      r.passes.Load(),
		SlowPasses:  r.slowPasses.Load(),
		SweepReaped: r.sweepReaped.Load(),
		Panics:      r.panics.Load(),
		Pending:     pending,
		SelfWaited:  self,
	}
}
