package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/boot"
	"github.com/photon-init/photon-init/pkg/boot/power"
	"github.com/photon-init/photon-init/pkg/boot/timeline"
	"github.com/photon-init/photon-init/pkg/containers/engine"
)

// containerWorkload is the machine's workload: the declared containers,
// and the control socket that serves them and the machine.
type containerWorkload struct{ engine *engine.Engine }

// Start starts the containers in the background and opens the control
// socket.
func (w containerWorkload) Start(ctx context.Context, env boot.WorkloadEnv) error {
	e := engine.Env{
		Log:     env.Log,
		Console: env.Console,
		Reaper:  env.Reaper,
		Config:  env.Config,
	}
	if env.Network != nil {
		e.NetworkOnline = env.Network.Online()
		e.ResolvConf = env.Network.ResolvConf
	}
	err := w.engine.Start(ctx, e)
	var m api.Machine
	if env.Machine != nil {
		m = machineAPI{env.Machine}
	}
	// The socket also serves the timeline and power requests, so it opens
	// even when the containers could not start.
	serveAPI(ctx, env.Log, api.DefaultSocket, w.engine.API(), m)
	return err
}

// Stop stops the containers in reverse dependency order.
func (w containerWorkload) Stop(ctx context.Context) error { return w.engine.Stop(ctx) }

// serveAPI opens the control socket at path and serves it in the
// background until ctx ends.
func serveAPI(ctx context.Context, log *slog.Logger, path string, c api.Containers, m api.Machine) {
	srv := api.NewServer(api.Options{Containers: c, Machine: m, Log: log, Version: version})
	l, err := api.Listen(path)
	if err != nil {
		log.Error(fmt.Sprintf("control socket %s: %v", path, err))
		return
	}
	safe.Go(log, "control socket", func() {
		if err := srv.Serve(ctx, l); err != nil && ctx.Err() == nil {
			log.Error(fmt.Sprintf("control socket %s: %v", path, err))
		}
	})
}

// machineAPI serves the machine's timeline and power requests.
type machineAPI struct{ m *boot.Machine }

func (a machineAPI) Timeline(ctx context.Context) (*timeline.Document, error) {
	d := a.m.Timeline()
	return &d, nil
}

func (a machineAPI) Power(ctx context.Context, action api.PowerAction) error {
	var act power.Action
	switch action {
	case api.Poweroff:
		act = power.Poweroff
	case api.Reboot:
		act = power.Reboot
	case api.Halt:
		act = power.Halt
	default:
		return fmt.Errorf("power action %q: %w", action, api.ErrInvalid)
	}
	a.m.Request(power.Request{Action: act, Reason: "control socket"})
	return nil
}
