package main

import (
	"flag"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/boot"
	"github.com/photon-init/photon-init/pkg/boot/timeline"
)

// pid1Start is taken as early as the Go runtime lets us.
var pid1Start = timeline.Now()

// runPID1 is the kernel's init. It never returns.
func runPID1(args []string) {
	// The kernel starts init with almost no environment.
	for k, v := range map[string]string{
		"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME": "/root",
		"TERM": "linux",
	} {
		if os.Getenv(k) == "" {
			os.Setenv(k, v)
		}
	}
	sandbox := inChildPIDNamespace()
	if sandbox {
		// Not a machine: a container or "unshare -p -f". Do not touch the
		// host kernel.
		fmt.Fprintln(os.Stderr, "photon-init: PID 1 of a child PID namespace: sandbox mode")
	}
	boot.Main(machineOptions(sandbox, ""))
}

// initialPIDNamespace is the inode of the kernel's initial PID namespace
// (PROC_PID_INIT_INO), fixed for every kernel.
const initialPIDNamespace = "pid:[4026531836]"

// inChildPIDNamespace reports whether PID 1 runs in a PID namespace other
// than the initial one. On a real boot /proc is not mounted yet, which also
// means a machine: the kernel mounts nothing for init.
func inChildPIDNamespace() bool {
	var fs unix.Statfs_t
	if err := unix.Statfs("/proc", &fs); err != nil || fs.Type != unix.PROC_SUPER_MAGIC {
		return false
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	return err == nil && ns != initialPIDNamespace
}

// cmdBoot is "photon-init boot": PID 1's role, refused elsewhere unless
// --force is given inside separate mount and UTS namespaces.
func cmdBoot(args []string) int {
	fs := flag.NewFlagSet("boot", flag.ContinueOnError)
	force := fs.Bool("force", false, "boot although not PID 1 (sandbox mode, for tests in their own mount and UTS namespaces)")
	cfg := fs.String("config", "", "machine configuration (default /etc/photon/init.yaml)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if os.Getpid() == 1 {
		runPID1(args)
	}
	if !*force {
		fmt.Fprintf(os.Stderr, "photon-init boot: refusing to boot: this process is not PID 1 (pid %d).\n"+
			"photon-init boots a machine as the kernel's init; run it as /init.\n"+
			"For tests, --force runs the boot sequence in sandbox mode inside your own\n"+
			"mount and UTS namespaces, e.g.: unshare -m -u photon-init boot --force\n", os.Getpid())
		return 2
	}
	if err := checkSandbox(); err != nil {
		fmt.Fprintf(os.Stderr, "photon-init boot --force: %v\n", err)
		return 2
	}
	// Nothing mounted or unmounted here may propagate to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Fprintf(os.Stderr, "photon-init boot --force: make mounts private: %v\n", err)
		return 1
	}
	boot.Main(machineOptions(true, *cfg))
	return 0
}

// checkSandbox refuses sandbox mode in the host's own mount or UTS
// namespace: the boot mounts /proc, /dev, /run and sets the host name. It
// compares with PID 1's namespaces, or where those cannot be read (some
// container runtimes hide them) with the parent process's, as after
// "unshare -m -u photon-init boot --force".
func checkSandbox() error {
	for _, ns := range []string{"mnt", "uts"} {
		self, err := os.Readlink("/proc/self/ns/" + ns)
		if err != nil {
			return fmt.Errorf("read own %s namespace: %w", ns, err)
		}
		other, err := os.Readlink("/proc/1/ns/" + ns)
		if err != nil {
			other, err = os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", os.Getppid(), ns))
		}
		if err != nil {
			return fmt.Errorf("cannot tell whether this process has a %s namespace of its own: %w", ns, err)
		}
		if self == other {
			return fmt.Errorf("refusing: this process shares its %s namespace with the host; run it inside its own mount and UTS namespaces (unshare -m -u photon-init boot --force)", ns)
		}
	}
	return nil
}
