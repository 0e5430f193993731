package watch_test

import (
	"context"
	"log/slog"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
	"github.com/photon-init/photon-init/pkg/containers/supervisor"
	"github.com/photon-init/photon-init/pkg/containers/watch"
)

// How the engine wires hot reload: the supervisor starts from the
// directory as loaded, and every change of the directory is reconciled.
// The first set Run hands on is the directory as it is then: reconciling
// it changes nothing, or catches up with what changed since the load.
func ExampleRun() {
	ctx := context.Background()
	log := slog.Default()
	sup := supervisor.New(supervisor.Options{Log: log /* Images, Runtime, NetworkOnline, ... */})
	cs, errs := manifest.LoadDir(manifest.DefaultDir)
	sup.Start(ctx, cs, supervisor.InvalidFromErrors(errs))
	safe.Go(log, "manifest watcher", func() {
		err := watch.Run(ctx, watch.Options{Dir: manifest.DefaultDir, Log: log}, func(set watch.Set) {
			sup.Reconcile(ctx, set.Containers, supervisor.InvalidFromErrors(set.Errors))
		})
		if err != nil {
			log.Warn("containers: no hot reload", "err", err)
		}
	})
}
