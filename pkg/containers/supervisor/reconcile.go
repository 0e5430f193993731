package supervisor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// StateRemoved appears only in events: the container's manifest was
// removed and the container is no longer supervised.
const StateRemoved State = "removed"

// Reconcile makes the supervised containers match a reloaded manifest
// directory (cs and invalid as for Start):
//   - a new manifest starts its container;
//   - a changed manifest (compared by content, the file's path aside)
//     stops that container and starts it again from the new one; those
//     depending on it with restart: true restart too, the others are left
//     alone;
//   - a removed manifest stops its container (those depending on it
//     first, when they are removed too) and forgets it;
//   - an invalid manifest whose container runs (matched by file, then by
//     name) leaves the container as it was: the error is kept in
//     Status.ManifestError and recorded as an event;
//   - an unchanged manifest leaves its container untouched.
//
// A container that failed because a dependency failed is started again
// when that dependency's manifest is added or changed. Reconcile returns
// when the stops are done and the new containers launched, or when ctx
// ends (then the containers being stopped are killed). Calls are
// serialized; after Stop, Reconcile does nothing.
func (s *Supervisor) Reconcile(ctx context.Context, cs []*manifest.Container, invalid []Invalid) {
	s.reconcileMu.Lock()
	defer s.reconcileMu.Unlock()
	s.mu.Lock()
	if s.ctx == nil {
		s.mu.Unlock()
		s.Start(ctx, cs, invalid)
		return
	}
	if s.shutdown {
		s.mu.Unlock()
		s.log.Info("containers: shutting down; manifest changes ignored")
		return
	}
	p := s.planLocked(cs, invalid)
	s.mu.Unlock()

	var wg sync.WaitGroup
	if len(p.removed) > 0 {
		wg.Add(1)
		safe.Go(s.log, "remove containers", func() {
			defer wg.Done()
			s.stopInOrder(ctx, p.removed, stopRequest{why: "manifest removed"})
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, u := range p.removed {
				s.removeLocked(u)
			}
		})
	}
	var mu sync.Mutex
	for _, c := range p.changed {
		wg.Add(1)
		safe.Go(s.log, "replace container "+c.m.Name, func() {
			defer wg.Done()
			if s.replace(ctx, c.u, c.m) {
				mu.Lock()
				p.started = append(p.started, c.m.Name)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	s.mu.Lock()
	s.retryFailedLocked(p.started)
	s.mu.Unlock()
}

// plan is what a Reconcile does after its first, locked, pass.
type plan struct {
	removed []*unit
	changed []change
	started []string // names (re)started: their failed dependents retry
}

// change is a container whose manifest changed.
type change struct {
	u *unit
	m *manifest.Container
}

// planLocked adds and starts the new containers, records the invalid
// manifests, and returns the containers to remove and to replace.
func (s *Supervisor) planLocked(cs []*manifest.Container, invalid []Invalid) *plan {
	p := &plan{}
	seen := map[*unit]bool{}
	byFile := map[string]*unit{}
	for _, u := range s.units {
		byFile[u.status.File] = u
	}
	for _, m := range cs {
		u := s.units[m.Name]
		switch {
		case u == nil:
			u = s.addLocked(m)
			s.launchLocked(u, "new manifest")
			p.started = append(p.started, m.Name)
		case seen[u]:
			s.log.Error(fmt.Sprintf("container %s: %s: name already used by %s", m.Name, m.File, u.status.File))
			continue
		case u.m == nil: // it was invalid
			u.m = m
			u.status.File, u.status.Image, u.status.ManifestError, u.status.Restarts = m.File, m.Image, "", 0
			s.launchLocked(u, "manifest now valid")
			p.started = append(p.started, m.Name)
		case sameManifest(u.m, m):
			u.m, u.status.File = m, m.File
			if u.status.ManifestError != "" {
				u.status.ManifestError = ""
				s.touchLocked(u)
				s.emitLocked(m.Name, u.status.State, u.status.State, "manifest valid again and unchanged")
			}
		default:
			p.changed = append(p.changed, change{u, m})
		}
		seen[u] = true
	}
	for _, bad := range invalid {
		u := byFile[bad.File]
		if u == nil {
			u = s.units[bad.Name]
		}
		switch {
		case u == nil:
			u = s.addInvalidLocked(bad)
		case seen[u]:
			s.log.Error(fmt.Sprintf("container %s: %s: %v", bad.Name, bad.File, bad.Err))
			continue
		case u.m == nil:
			u.status.File = bad.File
			s.setLocked(u, StateInvalid, firstLine(bad.Err))
		default:
			msg := firstLine(bad.Err)
			if u.status.ManifestError != msg {
				s.log.Error(fmt.Sprintf("container %s: %v", u.status.Name, bad.Err))
				u.status.ManifestError = msg
				s.touchLocked(u)
				s.emitLocked(u.status.Name, u.status.State, u.status.State, "manifest rejected, the container is left as it was: "+msg)
			}
		}
		seen[u] = true
	}
	for _, name := range s.order {
		if u := s.units[name]; !seen[u] {
			p.removed = append(p.removed, u)
		}
	}
	return p
}

// replace stops u's container and starts it again from m, and restarts
// those depending on it with restart: true. It reports whether the new
// one was launched.
func (s *Supervisor) replace(ctx context.Context, u *unit, m *manifest.Container) bool {
	s.stopUnit(ctx, u, stopRequest{why: "manifest changed", replace: true})
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.alive() {
		s.log.Error(fmt.Sprintf("container %s: did not stop in time for its new manifest; try again", m.Name))
		return false
	}
	u.m = m
	u.status.File, u.status.Image, u.status.ImageDigest = m.File, m.Image, ""
	u.status.ManifestError, u.status.Restarts, u.status.Health = "", 0, nil
	if !s.launchLocked(u, "manifest changed") {
		s.setLocked(u, StateStopped, "manifest changed during shutdown")
		return false
	}
	s.restartDependentsLocked(m.Name)
	return true
}

// removeLocked forgets a unit whose manifest was removed, once it has
// stopped.
func (s *Supervisor) removeLocked(u *unit) {
	name := u.status.Name
	if u.alive() {
		s.log.Error(fmt.Sprintf("container %s: manifest removed, but it did not stop in time", name))
		return
	}
	if s.units[name] != u {
		return
	}
	delete(s.units, name)
	s.order = slices.DeleteFunc(s.order, func(n string) bool { return n == name })
	s.touchLocked(u) // those waiting on it find it gone
	s.emitLocked(name, u.status.State, StateRemoved, "manifest removed")
}

// retryFailedLocked starts again the containers that failed because a
// dependency failed, when that dependency was just started (and so on
// down the chain).
func (s *Supervisor) retryFailedLocked(started []string) {
	again := map[string]bool{}
	for _, n := range started {
		again[n] = true
	}
	for more := true; more; {
		more = false
		for _, name := range s.order {
			u := s.units[name]
			if u.m == nil || u.status.State != StateFailed || u.alive() || !again[u.failedDep] || again[name] {
				continue
			}
			if s.launchLocked(u, "dependency "+u.failedDep+" started again") {
				again[name], more = true, true
			}
		}
	}
}

// sameManifest compares two manifests by content, leaving the file's path
// aside.
func sameManifest(a, b *manifest.Container) bool {
	x, y := *a, *b
	x.File, y.File = "", ""
	return reflect.DeepEqual(x, y)
}

// InvalidFromErrors groups the errors of manifest.LoadDir by file: one
// Invalid per rejected file, in the order of the errors, named after the
// file (its base name without the extension), its Err holding all of the
// file's problems, one per line. Errors that name no file (*manifest.Error
// with File "", or other errors) are left out: LoadDir gives those only
// for the directory itself, which the caller handles.
func InvalidFromErrors(errs []error) []Invalid {
	var out []Invalid
	byFile := map[string]int{}
	for _, err := range errs {
		var me *manifest.Error
		if !errors.As(err, &me) || me.File == "" {
			continue
		}
		i, ok := byFile[me.File]
		if !ok {
			base := filepath.Base(me.File)
			i = len(out)
			byFile[me.File] = i
			out = append(out, Invalid{Name: strings.TrimSuffix(base, filepath.Ext(base)), File: me.File})
		}
		out[i].Err = errors.Join(out[i].Err, err)
	}
	return out
}
