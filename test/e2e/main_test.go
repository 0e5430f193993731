// Package e2e boots photon-init in QEMU (q35 and microvm) and checks what
// its serial console shows: boot, module coldplug, poweroff through the
// ACPI power button, reboot through Ctrl-Alt-Del, and a broken config.
//
// Every test here boots a VM and is skipped by "go test -short". Run one
// with, for example:
//
//	go test ./test/e2e/ -run 'TestPoweroff/microvm' -v
//
// Consoles are kept in out/e2e/ and dumped into the test log on failure.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/photon-init/photon-init/test/vm"
)

// TestMain builds bin/photon-init with "make build" before the VM tests,
// so that they always boot the current code.
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		if err := buildPhoton(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// buildPhoton runs "make build" in the repository.
func buildPhoton() error {
	repo, err := vm.RepoRoot()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return vm.BuildPhoton(ctx, repo)
}
