package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/boot/console"
	"github.com/photon-init/photon-init/pkg/boot/reaper"
	"github.com/photon-init/photon-init/pkg/boot/timeline"
	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/containers/engine"
)

// cmdRun is "photon-init run --root DIR": the container supervisor alone,
// on a host that already has an init (development, tests, a systemd
// service). Every path is taken under DIR: DIR/etc/photon/init.yaml,
// DIR/etc/photon/containers, DIR/var/lib/photon, DIR/var/log/photon,
// DIR/run/photon. It runs until SIGTERM or SIGINT, then stops the
// containers in reverse dependency order and exits.
func cmdRun(args []string) int {
	flags := flag.NewFlagSet("run", flag.ContinueOnError)
	root := flags.String("root", "", "directory holding etc/photon, var/lib/photon, var/log/photon and run/photon (required)")
	cgroup := flags.String("cgroup-parent", "", "cgroup under which each container gets its own (default /photon)")
	level := flags.String("loglevel", "info", "debug, info, warn or error")
	stopTimeout := flags.Duration("stop-timeout", 2*time.Minute, "how long stopping all containers may take at exit")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *root == "" || flags.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: photon-init run --root DIR [--cgroup-parent CG] [--loglevel L]")
		return 2
	}
	abs, err := filepath.Abs(*root)
	if err != nil {
		fmt.Fprintf(os.Stderr, "photon-init run: %v\n", err)
		return 2
	}
	lv := new(slog.LevelVar)
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(os.Stderr, "photon-init run: --loglevel: %v\n", err)
		return 2
	}
	out := console.New(os.Stderr)
	defer out.Flush(2 * time.Second)
	log := slog.New(console.NewHandler(out, lv, timeline.Now))

	paths := engine.PathsUnder(abs)
	cfgPath := filepath.Join(abs, config.DefaultPath)
	cfg, err := config.Load(cfgPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		cfg = &config.Config{}
	case err != nil:
		log.Error(fmt.Sprintf("config: %v; going on without it", err))
		cfg = &config.Config{}
	}
	if cfg.Containers.Dir != "" {
		cfg.Containers.Dir = filepath.Join(abs, cfg.Containers.Dir)
	}
	if cfg.Registries.AuthFile != "" {
		cfg.Registries.AuthFile = filepath.Join(abs, cfg.Registries.AuthFile)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	// Orphans of the containers come to us, not to the host's init.
	rp := reaper.New(reaper.Options{Log: log, Subreaper: true})
	safe.Go(log, "reaper", func() {
		if err := rp.Run(ctx); err != nil {
			log.Error("reaper stopped", "err", err)
		}
	})

	eng := engine.New(paths)
	if err := eng.Start(ctx, engine.Env{Log: log, Console: out, Reaper: rp, Config: cfg, CgroupParent: *cgroup}); err != nil {
		log.Error(fmt.Sprintf("containers: %v", err))
		return 1
	}
	// The control socket of this root: photonctl --socket DIR/run/photon/photon.sock.
	// There is no machine here: timeline and power requests answer 501.
	serveAPI(ctx, log, filepath.Join(abs, api.DefaultSocket), eng.API(), nil)
	sig := <-sigs
	log.Info(fmt.Sprintf("%v: stopping containers", sig))
	stopCtx, stopCancel := context.WithTimeout(context.Background(), *stopTimeout)
	defer stopCancel()
	if err := eng.Stop(stopCtx); err != nil {
		log.Error(err.Error())
		return 1
	}
	log.Info("all containers stopped")
	return 0
}
