package engine

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/containers/container"
	"github.com/photon-init/photon-init/pkg/containers/logs"
	"github.com/photon-init/photon-init/pkg/containers/supervisor"
)

// streamBuffer bounds what a log or event stream holds for a slow client;
// beyond it the producer drops (logs say how many lines were missed).
const streamBuffer = 256

// API serves the engine's containers to the control socket (api.Containers).
type API struct{ e *Engine }

// API returns the engine's containers as the control socket sees them.
func (e *Engine) API() *API { return &API{e: e} }

// parts returns the supervisor and the log rings, or an error before Start.
func (a *API) parts() (*supervisor.Supervisor, *logs.Rings, error) {
	a.e.mu.Lock()
	defer a.e.mu.Unlock()
	if a.e.sup == nil {
		return nil, nil, fmt.Errorf("containers are not started yet: %w", api.ErrUnavailable)
	}
	return a.e.sup, a.e.rings, nil
}

// List returns every declared container, in load order.
func (a *API) List(ctx context.Context) ([]api.ContainerInfo, error) {
	sup, _, err := a.parts()
	if err != nil {
		return nil, err
	}
	st := sup.Status()
	out := make([]api.ContainerInfo, 0, len(st))
	for _, s := range st {
		out = append(out, a.info(s))
	}
	return out, nil
}

// Inspect returns one container.
func (a *API) Inspect(ctx context.Context, name string) (api.ContainerInfo, error) {
	sup, _, err := a.parts()
	if err != nil {
		return api.ContainerInfo{}, err
	}
	for _, s := range sup.Status() {
		if s.Name == name {
			return a.info(s), nil
		}
	}
	return api.ContainerInfo{}, notFound(name)
}

func notFound(name string) error {
	return fmt.Errorf("no container %q: %w", name, api.ErrNotFound)
}

// mapErr turns the supervisor's and the runtime's errors into the API's.
func mapErr(name string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, supervisor.ErrNotFound):
		return notFound(name)
	case errors.Is(err, container.ErrNotRunning):
		return fmt.Errorf("container %s: %w: %v", name, api.ErrConflict, err)
	}
	return err
}

// info maps the supervisor's status, and the runtime's view of the
// container's network, to the API's.
func (a *API) info(s supervisor.Status) api.ContainerInfo {
	ci := statusInfo(s)
	a.e.mu.Lock()
	rt := a.e.rt
	a.e.mu.Unlock()
	if rt == nil {
		return ci
	}
	if n, ok := rt.NetworkInfo(s.Name); ok {
		ci.Network = n.Mode
		for _, p := range n.Addresses {
			ci.Addresses = append(ci.Addresses, p.String())
		}
		for _, p := range n.Ports {
			port := api.Port{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: p.Protocol}
			if !p.Any() {
				port.HostIP = p.HostIP.String()
			}
			ci.Ports = append(ci.Ports, port)
		}
	}
	return ci
}

// statusInfo maps the supervisor's status to the API's.
func statusInfo(s supervisor.Status) api.ContainerInfo {
	ci := api.ContainerInfo{
		Name: s.Name, File: s.File, Image: s.Image, ImageDigest: s.ImageDigest,
		State: string(s.State), Reason: s.Reason, Pid: s.Pid,
		StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, Restarts: s.Restarts,
	}
	if s.LastExit != nil {
		ci.LastExit = &api.Exit{Code: s.LastExit.Code, Signal: s.LastExit.Signal, OOM: s.LastExit.OOM}
	}
	if h := s.Health; h != nil {
		ci.Health = &api.Health{Status: string(h.Status), FailingStreak: h.FailingStreak, LastCheck: h.LastProbe, LastOutput: h.LastOutput}
	}
	return ci
}

// Start starts a stopped, exited or failed container.
func (a *API) Start(ctx context.Context, name string) error {
	sup, _, err := a.parts()
	if err != nil {
		return err
	}
	return mapErr(name, sup.StartContainer(name))
}

// Stop stops a container and waits until it has stopped. A timeout other
// than the manifest's grace period is not supported by the supervisor: the
// request's context bounds the wait instead.
func (a *API) Stop(ctx context.Context, name string, opts api.StopOptions) error {
	sup, _, err := a.parts()
	if err != nil {
		return err
	}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		// After the timeout the supervisor kills at once (see
		// Instance.Stop: an ended context means SIGKILL now).
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	return mapErr(name, sup.StopContainer(ctx, name))
}

// Restart restarts a container.
func (a *API) Restart(ctx context.Context, name string, opts api.StopOptions) error {
	sup, _, err := a.parts()
	if err != nil {
		return err
	}
	return mapErr(name, sup.RestartContainer(name))
}

// running returns the runtime container behind a running container.
func (a *API) running(name string) (*container.Container, error) {
	sup, _, err := a.parts()
	if err != nil {
		return nil, err
	}
	inst, ok := sup.Instance(name)
	if !ok {
		if _, err := a.Inspect(context.Background(), name); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("container %s is not running: %w", name, api.ErrConflict)
	}
	i, ok := inst.(instance)
	if !ok {
		return nil, fmt.Errorf("container %s: not a runtime container", name)
	}
	return i.c, nil
}

// Kill sends sig to a running container's first process.
func (a *API) Kill(ctx context.Context, name string, sig syscall.Signal) error {
	c, err := a.running(name)
	if err != nil {
		return err
	}
	return mapErr(name, c.Signal(sig))
}

// Logs streams a container's log lines: those the files and the ring
// still hold, then new ones with Follow.
func (a *API) Logs(ctx context.Context, name string, opts api.LogOptions) (api.Stream[api.LogEntry], error) {
	_, rings, err := a.parts()
	if err != nil {
		return nil, err
	}
	if _, err := a.Inspect(ctx, name); err != nil {
		return nil, err
	}
	ring, ok := rings.Lookup(name)
	if !ok {
		return api.NewStream[api.LogEntry](nil, nil, nil), nil // it has not run yet
	}
	q := logs.Query{Tail: opts.Tail, Since: opts.Since, Follow: opts.Follow}
	if opts.Tail < 0 {
		q.Tail = logs.All
	}
	if opts.Tail == 0 && !opts.Follow {
		q.Tail = logs.All
	}
	ctx, cancel := context.WithCancel(context.Background())
	live := make(chan api.LogEntry, streamBuffer)
	safe.Go(a.e.log(), "logs "+name, func() {
		defer close(live)
		_ = ring.Stream(ctx, q, func(lines []logs.Entry, missed uint64) error {
			if missed > 0 {
				select {
				case live <- api.LogEntry{Time: time.Now(), Stream: "stderr", Line: fmt.Sprintf("(%d lines not shown: the client was too slow)", missed)}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			for _, l := range lines {
				select {
				case live <- api.LogEntry{Time: l.Time, Stream: string(l.Stream), Line: string(l.Text), Partial: l.Partial}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
	})
	return api.NewStream(nil, live, cancel), nil
}

// Events gives the remembered state changes from since on, then new ones.
func (a *API) Events(ctx context.Context, since time.Time) (api.Stream[api.Event], error) {
	sup, _, err := a.parts()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	sub := sup.Subscribe(ctx) // subscribe first: nothing falls between
	var first []api.Event
	var last uint64
	if !since.IsZero() {
		for _, ev := range sup.Events() {
			if !ev.Time.Before(since) {
				first = append(first, event(ev))
				last = ev.Seq
			}
		}
	}
	live := make(chan api.Event, streamBuffer)
	safe.Go(a.e.log(), "events", func() {
		defer close(live)
		for ev := range sub {
			if ev.Seq <= last {
				continue // given with the history
			}
			select {
			case live <- event(ev):
			default: // a slow client loses events, never the supervisor
			}
		}
	})
	return api.NewStream(first, live, cancel), nil
}

func event(ev supervisor.Event) api.Event {
	return api.Event{Time: ev.Time, Container: ev.Container, From: string(ev.From), To: string(ev.To), Reason: ev.Reason}
}

// Exec starts a process in a running container.
func (a *API) Exec(ctx context.Context, name string, opts api.ExecOptions, stdio api.ExecIO) (api.ExecSession, error) {
	c, err := a.running(name)
	if err != nil {
		return nil, err
	}
	p, err := c.Exec(ctx, container.ExecOptions{
		Args: opts.Cmd, Env: opts.Env, Cwd: opts.WorkingDir, User: opts.User,
		TTY: opts.TTY, Width: opts.Size.Width, Height: opts.Size.Height,
		Stdin: stdio.Stdin, Stdout: stdio.Stdout, Stderr: stdio.Stderr,
	})
	if err != nil {
		return nil, mapErr(name, err)
	}
	return execSession{p}, nil
}

// execSession adapts container.ExecProcess to api.ExecSession.
type execSession struct{ p *container.ExecProcess }

func (s execSession) Resize(size api.TermSize) error { return s.p.Resize(size.Width, size.Height) }
func (s execSession) Close() error                   { return s.p.Close() }

func (s execSession) Wait(ctx context.Context) (int, error) {
	e, err := s.p.Wait(ctx)
	if err != nil {
		return -1, err
	}
	return e.Code, nil
}

// API implements the control socket's container endpoints.
var _ api.Containers = (*API)(nil)
