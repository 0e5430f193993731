package supervisor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// awaitDependencies waits until every dependency of the life's manifest
// meets its condition. It returns false when the life must end: a
// required dependency can no longer meet its condition (u is failed), or
// the life is asked to stop (u is stopped).
func (s *Supervisor) awaitDependencies(ctx context.Context, u *unit, l *life) bool {
	m := l.m
	names := slices.Sorted(maps.Keys(m.DependsOn))
	warned := map[string]bool{}
	for {
		wait, why, failed, err := s.checkDependencies(m, names, warned)
		if err != nil {
			s.mu.Lock()
			u.failedDep = failed
			s.setLocked(u, StateFailed, err.Error())
			s.mu.Unlock()
			return false
		}
		if wait == nil {
			return true
		}
		s.set(u, StateWaiting, why)
		if !pause(s, ctx, u, l, wait, false, "while waiting") {
			return false
		}
	}
}

// checkDependencies checks the dependencies in order. It returns a channel
// to wait on and the reason while one is not met yet, or the error (and
// the dependency's name) when a required one never will be, or nothing
// when all are met. Optional dependencies that fail are logged once
// (warned) and skipped.
func (s *Supervisor) checkDependencies(m *manifest.Container, names []string, warned map[string]bool) (wait <-chan struct{}, why, failed string, err error) {
	for _, dep := range names {
		cond := m.DependsOn[dep]
		if dep == manifest.NetworkOnline {
			if s.networkOnline() {
				continue
			}
			return s.opts.NetworkOnline, "waiting for the network to be online", "", nil
		}
		s.mu.Lock()
		d := s.units[dep]
		var st Status
		var changed chan struct{}
		if d != nil {
			st, changed = d.snapshot(), d.changed
		}
		s.mu.Unlock()
		c := condition(cond)
		met, derr := conditionMet(c, d != nil, st)
		if derr != nil {
			if !cond.Required {
				if !warned[dep] {
					warned[dep] = true
					s.log.Warn(fmt.Sprintf("container %s: optional dependency %s: %v; starting without it", m.Name, dep, derr))
				}
				continue
			}
			return nil, "", dep, fmt.Errorf("dependency %s: %w", dep, derr)
		}
		if !met {
			return changed, fmt.Sprintf("waiting for %s (%s): %s", dep, c, depSummary(c, st)), "", nil
		}
	}
	return nil, "", "", nil
}

// awaitNetwork holds a container whose image comes from a registry until
// the network is online.
func (s *Supervisor) awaitNetwork(ctx context.Context, u *unit, l *life) bool {
	if s.opts.Remote == nil || s.networkOnline() || !s.opts.Remote(l.m.Image) {
		return true
	}
	s.set(u, StateWaiting, "waiting for the network to pull "+l.m.Image)
	return pause(s, ctx, u, l, s.opts.NetworkOnline, false, "while waiting for the network")
}

// networkOnline reports whether the machine's network is online (always,
// when the supervisor was given no NetworkOnline).
func (s *Supervisor) networkOnline() bool {
	if s.opts.NetworkOnline == nil {
		return true
	}
	select {
	case <-s.opts.NetworkOnline:
		return true
	default:
		return false
	}
}

// condition is a dependency's condition, service_started when unset.
func condition(d manifest.Dependency) string {
	if d.Condition == "" {
		return manifest.ConditionStarted
	}
	return d.Condition
}

// conditionMet says whether a dependency in state st meets cond, or why
// it never will. exists is false when no container has the name.
func conditionMet(cond string, exists bool, st Status) (bool, error) {
	if !exists {
		return false, ErrNotFound
	}
	switch st.State {
	case StateInvalid:
		return false, fmt.Errorf("invalid manifest: %s", st.Reason)
	case StateFailed, StateStopped:
		return false, fmt.Errorf("%s: %s", st.State, st.Reason)
	}
	exit := "exit status unknown"
	if st.LastExit != nil {
		exit = st.LastExit.String()
	}
	switch cond {
	case manifest.ConditionCompleted:
		// One that exited 0 and is restarted by its policy completed too.
		if (st.State == StateExited || st.State == StateBackoff) && st.LastExit != nil && st.LastExit.Code == 0 {
			return true, nil
		}
		if st.State == StateExited {
			return false, fmt.Errorf("did not complete successfully (%s)", exit)
		}
	case manifest.ConditionHealthy:
		switch {
		case st.State == StateRunning && st.Health == nil:
			return false, errNoHealthcheck
		case st.State == StateRunning:
			return st.Health.Status == HealthHealthy, nil
		case st.State == StateExited:
			return false, fmt.Errorf("exited (%s) before it was healthy", exit)
		}
	case manifest.ConditionReady:
		switch {
		case st.State == StateRunning:
			return st.Ready, nil
		case st.State == StateExited:
			return false, fmt.Errorf("exited (%s) without sending READY=1", exit)
		}
	default: // service_started
		return st.State == StateRunning || st.State == StateExited, nil
	}
	return false, nil
}

var errNoHealthcheck = errors.New("has no health check (service_healthy needs one)")

// depSummary describes a dependency that does not meet cond yet.
func depSummary(cond string, st Status) string {
	switch {
	case st.State == StateBackoff:
		return st.Name + " is " + st.Reason
	case st.State == StateRunning && cond == manifest.ConditionHealthy && st.Health != nil:
		return fmt.Sprintf("%s is running, %s", st.Name, st.Health.Status)
	case st.State == StateRunning && cond == manifest.ConditionReady:
		return st.Name + " is running, not ready yet"
	}
	return fmt.Sprintf("%s is %s", st.Name, st.State)
}
