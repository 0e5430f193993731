package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/photon-init/photon-init/pkg/api/ctl"
)

// cmdCtl is photonctl: "photon-init ctl VERB ..." or the binary started
// as photonctl (prog names it in messages). SIGINT, SIGTERM and SIGHUP end
// a running verb (restoring a raw terminal) with 128 + the signal.
func cmdCtl(prog string, args []string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	var caught syscall.Signal
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			caught = s.(syscall.Signal)
			cancel()
		case <-done:
		}
	}()
	code := ctl.Run(ctx, ctl.Env{
		Prog:        prog,
		Version:     version,
		Stdin:       os.Stdin,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		WatchResize: true,
	}, args)
	close(done)
	if ctx.Err() != nil && caught != 0 {
		return 128 + int(caught)
	}
	return code
}
