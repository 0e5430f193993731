package main

import (
	"fmt"
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// Registers the device cgroup manager that libcontainer needs.
	_ "github.com/opencontainers/cgroups/devices"
	// nsenter runs its C constructor before the Go runtime starts, joining
	// the container's namespaces in the "init" re-exec.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// containerInit is libcontainer's re-exec entry point: the new container's
// first process runs "photon-init init", which sets the container up and
// execs the container's entrypoint. It returns only on failure.
func containerInit() {
	libcontainer.Init()
	fmt.Fprintln(os.Stderr, "photon-init init: libcontainer.Init returned")
}
