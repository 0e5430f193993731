package main

import (
	"context"

	"github.com/photon-init/photon-init/pkg/boot"
	"github.com/photon-init/photon-init/pkg/containers/engine"
)

// containerWorkload is the machine's workload: the declared containers.
type containerWorkload struct{ engine *engine.Engine }

// Start starts the containers in the background.
func (w containerWorkload) Start(ctx context.Context, env boot.WorkloadEnv) error {
	e := engine.Env{
		Log:     env.Log,
		Console: env.Console,
		Reaper:  env.Reaper,
		Config:  env.Config,
	}
	if env.Network != nil {
		e.NetworkOnline = env.Network.Online()
	}
	return w.engine.Start(ctx, e)
}

// Stop stops the containers in reverse dependency order.
func (w containerWorkload) Stop(ctx context.Context) error { return w.engine.Stop(ctx) }
