// Command photon-init is a PID-1 init and container supervisor.
//
// One static binary plays several roles, picked from how it is started:
//
//	PID 1, or "photon-init boot"   boots the machine, then supervises
//	"photon-init init"             libcontainer's container-init re-exec
//	"photon-init run --root DIR"   runs the containers of DIR on a host with an init
//	"photon-init build ..."        assembles a bootable initramfs
//	"photon-init validate PATH..." checks init.yaml and container manifests offline
//	"photon-init ctl VERB ...", or started as photonctl: the control socket's client
//	"photon-init version"          prints the version
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// version is stamped by the linker (-X main.version=...).
var version = "dev"

func main() {
	os.Exit(run(os.Args))
}

// run dispatches on the role and returns the process exit status. As PID 1
// it never returns.
func run(args []string) int {
	// libcontainer's re-exec comes first: the container's init process is
	// PID 1 of the container's PID namespace, and must not boot a machine.
	if len(args) > 1 && args[1] == "init" && os.Getenv("_LIBCONTAINER_INITPIPE") != "" {
		containerInit()
		return 1 // containerInit only returns on failure.
	}
	if os.Getpid() == 1 {
		runPID1(args)
		// runPID1 does not return; this is only reached if it ever did.
		select {}
	}
	if filepath.Base(args[0]) == "photonctl" {
		return cmdCtl("photonctl", args[1:])
	}
	if filepath.Base(args[0]) == "init" && len(args) == 1 {
		// The kernel may exec us as /init with a pid other than 1 only
		// inside a pid namespace test; treat it like "boot".
		return cmdBoot(args[1:])
	}
	if len(args) < 2 {
		usage(os.Stderr)
		return 2
	}
	switch args[1] {
	case "boot":
		return cmdBoot(args[2:])
	case "init":
		containerInit()
		return 1 // containerInit only returns on failure.
	case "run":
		tuneGC(os.Getenv) // no boot: the supervisor's target from the start
		return cmdRun(args[2:])
	case "build":
		return cmdBuild(args[2:])
	case "validate":
		return cmdValidate(args[2:])
	case "ctl":
		return cmdCtl("photon-init ctl", args[2:])
	case "version", "--version", "-v":
		fmt.Println("photon-init", version)
		return 0
	case "help", "--help", "-h":
		usage(os.Stdout)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "photon-init: unknown command %q\n", args[1])
		usage(os.Stderr)
		return 2
	}
}

func usage(w *os.File) {
	fmt.Fprint(w, `usage: photon-init COMMAND [ARGS]

commands:
  boot [--force]      boot the machine (the default as PID 1)
  run --root DIR      run the containers of DIR/etc/photon/containers on this host
  build -o FILE ...   assemble a bootable initramfs (photon-init build -h)
  validate PATH...    check init.yaml, container manifests or a manifest directory offline
  ctl VERB ...        talk to the control socket (photonctl; photon-init ctl help)
  version             print the version
`)
}
