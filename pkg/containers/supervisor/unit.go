package supervisor

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// unit is one container under supervision: its manifest, its status, and
// the goroutine (life) that runs it, if any. Every field is guarded by
// Supervisor.mu.
type unit struct {
	m       *manifest.Container // nil while the manifest is invalid
	status  Status
	changed chan struct{} // closed and replaced at every change of status
	life    *life         // the latest goroutine; nil before the first
	inst    Instance      // the running instance, if any
	// failedDep names the dependency whose failure failed this unit:
	// when that dependency is started again, so is this one.
	failedDep string
	// restarting: the next attempt is a restart; the state change that
	// begins it counts it in Status.Restarts.
	restarting bool
}

// alive reports whether u's goroutine runs.
func (u *unit) alive() bool {
	if u.life == nil {
		return false
	}
	select {
	case <-u.life.done:
		return false
	default:
		return true
	}
}

// snapshot copies u's status, pointers included.
func (u *unit) snapshot() Status {
	st := u.status
	if st.Health != nil {
		h := *st.Health
		st.Health = &h
	}
	if st.LastExit != nil {
		e := *st.LastExit
		st.LastExit = &e
	}
	return st
}

// life is one goroutine running a unit from its dependencies to its end
// (exited, failed, stopped), through any number of restarts, always with
// the same manifest.
type life struct {
	m    *manifest.Container
	stop chan struct{} // closed to ask the life to end
	// ctx ends with the supervisor's or when stop is closed: the image,
	// create and start steps run under it (a stop request cancels them
	// without a goroutine watching stop).
	ctx     context.Context
	cancel  context.CancelFunc
	req     stopRequest         // why; set before stop is closed
	restart chan restartRequest // restart requests (capacity 1)
	done    chan struct{}       // closed when the goroutine has ended
}

// stopRequest is why and how a life is asked to end.
type stopRequest struct {
	ctx context.Context // bounds the stop: when it ends, the container is killed
	why string          // "shutdown", "stop requested", "manifest removed", ...
	// replace: the manifest changed and Reconcile starts a new life; the
	// old one ends without a final state.
	replace bool
}

// restartRequest asks a running container to restart.
type restartRequest struct {
	why string
	// operator: asked through RestartContainer; such a request also ends
	// a backoff at once.
	operator bool
}

// launchLocked starts a new life for u (which has a manifest), unless the
// supervisor is stopping or not started. why is the reason of the first
// state.
func (s *Supervisor) launchLocked(u *unit, why string) bool {
	if s.shutdown || s.ctx == nil || u.m == nil {
		return false
	}
	l := &life{m: u.m, stop: make(chan struct{}), restart: make(chan restartRequest, 1), done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(s.ctx)
	u.life, u.failedDep, u.restarting = l, "", false
	u.status.NextStart = time.Time{}
	s.setLocked(u, StateWaiting, why)
	ctx := s.ctx
	s.wg.Add(1)
	safe.Go(s.log, "container "+l.m.Name, func() {
		defer s.wg.Done()
		defer close(l.done)
		defer l.cancel()
		err := safe.Call("container "+l.m.Name, func() error {
			s.run(ctx, u, l)
			return nil
		})
		if err != nil {
			s.log.Error(err.Error())
			s.set(u, StateFailed, "internal error: "+firstLine(err))
		}
	})
	return true
}

// stopUnit asks u's life to end and waits until it has, or until ctx
// ends (and then the container is being killed).
func (s *Supervisor) stopUnit(ctx context.Context, u *unit, req stopRequest) {
	s.mu.Lock()
	l := u.life
	if l == nil || !u.alive() {
		s.mu.Unlock()
		return
	}
	select {
	case <-l.stop: // asked already
	default:
		req.ctx = ctx
		l.req = req
		close(l.stop)
		l.cancel()
	}
	s.mu.Unlock()
	select {
	case <-l.done:
	case <-ctx.Done():
	}
}

// run is one life: wait for the dependencies, prepare, start, supervise,
// and restart by the policy until the container ends for good or is asked
// to stop.
func (s *Supervisor) run(ctx context.Context, u *unit, l *life) {
	pol := newRestarter(l.m.Restart, s.opts)
	for {
		if !s.awaitDependencies(ctx, u, l) || !s.awaitNetwork(ctx, u, l) {
			return
		}
		res := s.runOnce(ctx, u, l, pol)
		switch {
		case res.stopped:
			detail := "before it started"
			if res.exit != nil {
				detail = res.exit.String()
			}
			s.endStopped(u, l, detail)
			return
		case res.restart != "":
			s.mu.Lock()
			u.restarting = true
			s.restartDependentsLocked(l.m.Name)
			s.mu.Unlock()
			continue
		}
		d := pol.decide(res)
		if !d.restart {
			if d.state == StateFailed && res.err != nil {
				s.log.Error(fmt.Sprintf("container %s: %v", l.m.Name, res.err))
			}
			s.set(u, d.state, d.reason)
			return
		}
		if !s.backoff(ctx, u, l, d.delay, d.reason) {
			return
		}
	}
}

// backoff waits delay before the next start, showing why. It returns
// false when the life must end (its state set).
func (s *Supervisor) backoff(ctx context.Context, u *unit, l *life, delay time.Duration, why string) bool {
	t := s.clock.NewTimer(delay)
	defer t.Stop()
	s.mu.Lock()
	u.status.NextStart = s.clock.Now().Add(delay)
	s.restartDependentsLocked(l.m.Name)
	s.setLocked(u, StateBackoff, fmt.Sprintf("backing off, next start in %s, %s", delay, why))
	s.mu.Unlock()
	if !pause(s, ctx, u, l, t.Chan(), true, "while backing off") {
		return false
	}
	s.mu.Lock()
	u.restarting = true
	s.mu.Unlock()
	return true
}

// pause waits for ch, ignoring restart requests (but for an operator's
// when operatorWakes), and returns false when the life is asked to end
// first (its state set, detail saying in which phase).
func pause[T any](s *Supervisor, ctx context.Context, u *unit, l *life, ch <-chan T, operatorWakes bool, detail string) bool {
	for {
		select {
		case <-ch:
			return true
		case r := <-l.restart:
			if operatorWakes && r.operator {
				return true
			}
		case <-l.stop:
			s.endStopped(u, l, detail)
			return false
		case <-ctx.Done():
			s.endStopped(u, l, detail)
			return false
		}
	}
}

// endStopped records that a life ended on request: stopped, with the
// request's reason and detail; nothing when the life is being replaced.
func (s *Supervisor) endStopped(u *unit, l *life, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	why := l.req.why
	if why == "" {
		why = "cancelled"
	}
	if l.req.replace {
		return
	}
	s.setLocked(u, StateStopped, why+", "+detail)
}

// runResult is how one run of a container ended.
type runResult struct {
	exit    *Exit         // nil when it did not run or its exit is unknown
	err     error         // it could not be prepared, started or waited for
	ran     time.Duration // how long it ran
	cause   string        // why the supervisor ended it as a failure (unhealthy, watchdog)
	stopped bool          // a stop request ended it
	restart string        // a restart request ended it: why
}

// runOnce gets the image, creates and starts the container, and
// supervises it until it ends.
func (s *Supervisor) runOnce(ctx context.Context, u *unit, l *life, pol *restarter) runResult {
	p := s.prepareApart(ctx, u, l)
	if p.inst == nil {
		return p.res
	}
	defer func() {
		if err := p.inst.Destroy(); err != nil {
			s.log.Warn(fmt.Sprintf("container %s: destroy: %v", l.m.Name, err))
		}
	}()
	if p.res.stopped || p.res.err != nil {
		return p.res
	}
	return s.supervise(ctx, u, l, p.inst, p.hc, pol)
}

// prepared is what prepare returns: the instance (nil when none was
// created, which then needs no Destroy), its health check, and a result
// when the run ends before it is supervised.
type prepared struct {
	inst Instance
	hc   *healthConfig
	res  runResult
}

// prepareApart runs prepare on a goroutine of its own and waits for it.
// Getting the image and creating and starting the container go deep
// (libcontainer, the image store): their stack is freed when that
// goroutine ends, while the life's goroutine, which then supervises the
// container for as long as it runs, keeps the small stack its select
// needs (it shrinks only when a collection finds it mostly unused, which
// is rare once the containers run).
func (s *Supervisor) prepareApart(ctx context.Context, u *unit, l *life) prepared {
	done := make(chan prepared, 1)
	go func() {
		var p prepared
		if err := safe.Call("prepare container "+l.m.Name, func() error {
			s.prepare(ctx, u, l, &p)
			return nil
		}); err != nil {
			p.res = runResult{err: err} // p.inst, if created, is still destroyed
		}
		done <- p
	}()
	return <-done
}

// prepare gets the image, creates and starts the container, filling p
// (p.inst as soon as the container is created).
func (s *Supervisor) prepare(ctx context.Context, u *unit, l *life, p *prepared) {
	m := l.m
	// A stop request cancels the preparation through l.ctx.
	opCtx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	asked := func() bool {
		select {
		case <-l.stop:
			return true
		default:
			return ctx.Err() != nil
		}
	}

	s.set(u, StatePreparing, "getting image "+m.Image)
	img, err := s.opts.Images.Get(opCtx, m.Image)
	switch {
	case asked():
		p.res = runResult{stopped: true}
		return
	case err != nil:
		// The store's errors name the reference already.
		p.res = runResult{err: err}
		return
	}
	s.mu.Lock()
	u.status.ImageDigest = img.Digest
	s.setLocked(u, StatePreparing, "creating the container")
	s.mu.Unlock()
	inst, err := s.opts.Runtime.Create(opCtx, m, img)
	if err != nil {
		if asked() {
			p.res = runResult{stopped: true}
			return
		}
		p.res = runResult{err: fmt.Errorf("create: %w", err)}
		return
	}
	p.inst = inst // destroyed by runOnce from now on
	if asked() {
		p.res = runResult{stopped: true}
		return
	}
	if err := inst.Start(opCtx); err != nil {
		if asked() {
			p.res = runResult{stopped: true}
			return
		}
		p.res = runResult{err: fmt.Errorf("start: %w", err)}
		return
	}
	hc, err := healthConfigFor(m.Healthcheck, img.Config.Healthcheck)
	if err != nil {
		s.log.Warn(fmt.Sprintf("container %s: the image's health check is not used: %v", m.Name, err))
	}
	p.hc = hc
}

// waited is what Instance.Wait returned.
type waited struct {
	exit Exit
	err  error
}

// supervise follows a started container until its process has exited:
// stop and restart requests, health probes, sd_notify messages and the
// watchdog.
func (s *Supervisor) supervise(ctx context.Context, u *unit, l *life, inst Instance, hc *healthConfig, pol *restarter) runResult {
	m := l.m
	name := m.Name
	// The exit is waited for in the loop below (inst.Done), not by a
	// goroutine of its own: a running container costs the supervisor this
	// one goroutine.
	exited := inst.Done()

	started := s.clock.Now()
	var probe, watchdog alarm
	defer probe.stop()
	defer watchdog.stop()
	var hs *healthState
	if hc != nil {
		hs = newHealthState(hc, started)
		probe.set(s.clock, hs.nextDelay(started))
	}
	wdInterval := m.Watchdog // WATCHDOG_USEC= may change it
	if wdInterval > 0 {
		watchdog.set(s.clock, wdInterval)
	}
	s.mu.Lock()
	u.inst = inst
	u.status.Pid = inst.Pid()
	u.status.StartedAt, u.status.FinishedAt, u.status.NextStart = started, time.Time{}, time.Time{}
	u.status.Ready, u.status.NotifyStatus, u.status.LastWatchdog = false, "", time.Time{}
	u.status.Health = hs.snapshot()
	s.setLocked(u, StateRunning, fmt.Sprintf("started, pid %d", u.status.Pid))
	s.mu.Unlock()

	var (
		res       runResult
		ending    bool // the instance is being stopped
		stopC     = l.stop
		ctxDone   = ctx.Done()
		notes     = inst.Notifications()
		probeDone = make(chan probeResult, 1) // one probe at a time: the next is armed after the result
		// One token per Stop call that has returned: at most two calls,
		// one for a restart or a failure, one for a stop request.
		stops   = make(chan struct{}, 2)
		running int
	)
	probeCtx, cancelProbe := context.WithCancel(ctx)
	defer cancelProbe()
	stopInst := func(sctx context.Context, sig syscall.Signal, reason string) {
		ending = true
		probe.stop()
		watchdog.stop()
		s.set(u, StateStopping, reason)
		running++
		safe.Go(s.log, "container "+name+" stop", func() {
			defer func() { stops <- struct{}{} }()
			if err := inst.Stop(sctx, sig, s.grace(m)); err != nil {
				s.log.Warn(fmt.Sprintf("container %s: stop: %v", name, err))
			}
		})
	}
	for {
		select {
		case <-exited:
			var w waited
			if err := safe.Call("wait for container "+name, func() error {
				w.exit, w.err = inst.Wait(context.WithoutCancel(ctx))
				return nil
			}); err != nil {
				w.err = err
			}
			for ; running > 0; running-- {
				<-stops
			}
			now := s.clock.Now()
			res.ran = now.Sub(started)
			s.mu.Lock()
			u.inst = nil
			u.status.Pid, u.status.FinishedAt = 0, now
			if w.err == nil {
				e := w.exit
				u.status.LastExit, res.exit = &e, &e
			} else {
				res.err = fmt.Errorf("wait: %w", w.err)
			}
			s.mu.Unlock()
			return res

		case <-stopC:
			stopC, ctxDone = nil, nil
			s.mu.Lock()
			req := l.req
			s.mu.Unlock()
			res.stopped, res.restart, res.cause = true, "", ""
			stopInst(req.ctx, stopSignal(m), req.why)

		case <-ctxDone:
			stopC, ctxDone = nil, nil
			res.stopped, res.restart, res.cause = true, "", ""
			stopInst(ctx, stopSignal(m), "cancelled")

		case r := <-l.restart:
			if !ending {
				res.restart = r.why
				stopInst(context.WithoutCancel(ctx), stopSignal(m), "restarting: "+r.why)
			}

		case <-probe.C():
			probe.fired()
			if !ending {
				s.runProbe(probeCtx, name, inst, hc, probeDone)
			}

		case p := <-probeDone:
			if ending {
				continue
			}
			changed := hs.record(p)
			probe.set(s.clock, hs.nextDelay(s.clock.Now()))
			s.mu.Lock()
			u.status.Health = hs.snapshot()
			if changed {
				s.setLocked(u, StateRunning, hs.reason(p))
			} else {
				s.touchLocked(u)
			}
			s.mu.Unlock()
			if changed && hs.h.Status == HealthUnhealthy && pol.restartsFailure(s.clock.Now().Sub(started)) {
				res.cause = "unhealthy (" + p.summary() + ")"
				stopInst(context.WithoutCancel(ctx), stopSignal(m), "unhealthy, restarting: "+p.summary())
			}

		case n, ok := <-notes:
			if !ok {
				notes = nil
				continue
			}
			// The watchdog is re-armed before the status shows the
			// message, so that whoever sees the status sees the new
			// deadline.
			if !ending && n.WatchdogTimeout > 0 {
				wdInterval = n.WatchdogTimeout
			}
			if !ending && !n.WatchdogTrigger && wdInterval > 0 && (n.Watchdog || n.Ready || n.WatchdogTimeout > 0) {
				watchdog.set(s.clock, wdInterval)
			}
			s.notified(u, n, ending)
			if !ending && n.WatchdogTrigger {
				res.cause = "watchdog triggered by the container (WATCHDOG=trigger)"
				stopInst(context.WithoutCancel(ctx), syscall.SIGKILL, res.cause)
			}

		case <-watchdog.C():
			watchdog.fired()
			if !ending {
				res.cause = fmt.Sprintf("watchdog timeout (no WATCHDOG=1 for %s)", wdInterval)
				stopInst(context.WithoutCancel(ctx), syscall.SIGKILL, res.cause)
			}
		}
	}
}

// grace is how long a stop waits before it kills.
func (s *Supervisor) grace(m *manifest.Container) time.Duration {
	if m.StopGracePeriod > 0 {
		return m.StopGracePeriod
	}
	return s.opts.DefaultStopGrace
}

// maxNotifyStatus bounds a STATUS= line kept in Status.
const maxNotifyStatus = 256

// notified applies one sd_notify message to u's status.
func (s *Supervisor) notified(u *unit, n Notification, ending bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n.Status != "" {
		u.status.NotifyStatus = bounded(n.Status, maxNotifyStatus)
	}
	if n.Watchdog {
		u.status.LastWatchdog = s.clock.Now()
	}
	reason := ""
	switch {
	case n.Stopping:
		reason = reasonNotifyStopping
	case n.Reloading:
		reason = reasonNotifyReloading
	case n.Ready && (!u.status.Ready || u.status.Reason == reasonNotifyReloading):
		reason = reasonNotifyReady
	}
	if n.Ready {
		u.status.Ready = true
	}
	if reason != "" && !ending {
		s.setLocked(u, StateRunning, reason)
		return
	}
	s.touchLocked(u)
}

// Reasons set by sd_notify messages.
const (
	reasonNotifyReady     = "ready (READY=1)"
	reasonNotifyReloading = "reloading (RELOADING=1)"
	reasonNotifyStopping  = "stopping (STOPPING=1)"
)

// restartDependentsLocked asks the containers that depend on name with
// restart: true, and that run or are being started, to restart.
func (s *Supervisor) restartDependentsLocked(name string) {
	for _, d := range s.units {
		if !d.alive() {
			continue
		}
		dep, ok := d.life.m.DependsOn[name]
		if !ok || !dep.Restart {
			continue
		}
		if st := d.status.State; st != StateRunning && st != StatePreparing {
			continue
		}
		select {
		case d.life.restart <- restartRequest{why: "dependency " + name + " restarted"}:
		default: // one is pending already
		}
	}
}

// set moves u to state st for reason.
func (s *Supervisor) set(u *unit, st State, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setLocked(u, st, reason)
}

// setLocked moves u to state st for reason, recording an event when
// either changes, and wakes those waiting on u. Leaving the backoff state
// clears NextStart; the first state of a restart counts it.
func (s *Supervisor) setLocked(u *unit, st State, reason string) {
	old := u.status.State
	if old == st && u.status.Reason == reason {
		s.touchLocked(u)
		return
	}
	if st != StateBackoff {
		u.status.NextStart = time.Time{}
	}
	if u.restarting && (st == StateWaiting || st == StatePreparing) {
		u.restarting = false
		u.status.Restarts++
	}
	u.status.State, u.status.Reason = st, reason
	s.touchLocked(u)
	s.emitLocked(u.status.Name, old, st, reason)
}

// touchLocked wakes those waiting for a change of u's status.
func (s *Supervisor) touchLocked(u *unit) {
	close(u.changed)
	u.changed = make(chan struct{})
}
