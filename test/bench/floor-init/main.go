// Command floor-init is the benchmark's floor: the least an /init can do
// to serve HTTP from a VM on a distribution kernel, with no container.
//
// As PID 1 it mounts /proc, prints the guest uptime at which it started
// ("floor: pid1 start uptime X"), loads the network card's kernel modules
// (the kernel has virtio_net as a module) from the list in
// /etc/bench/modules.MACHINE — MACHINE from "benchmachine=" on the kernel
// command line, the module files relative to /lib/modules/RELEASE, in load
// order — brings lo and eth0 up with 10.0.2.15/24 set statically (the
// address QEMU's user network gives by DHCP; the floor does not pay for
// DHCP), and execs /bin/httpserver with PORT=8080. The server, now PID 1,
// prints when it listens and when its first request arrives.
//
// Anything that fails is printed and the floor carries on to the exec:
// the benchmark judges a boot by the server's lines and the host's HTTP
// request.
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The address and server of the floor.
const (
	address = "10.0.2.15/24"
	server  = "/bin/httpserver"
)

func main() {
	start := uptime()
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "floor-init: not PID 1, refusing to run")
		os.Exit(2)
	}
	if err := os.MkdirAll("/proc", 0o555); err != nil {
		report("mkdir /proc: %v", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		report("mount /proc: %v", err)
	}
	fmt.Printf("floor: pid1 start uptime %.3fs\n", start.Seconds())
	if err := loadModules(); err != nil {
		report("%v", err)
	}
	if err := network(); err != nil {
		report("%v", err)
	}
	fmt.Printf("floor: network up uptime %.3fs\n", uptime().Seconds())
	env := []string{"PATH=/bin", "PORT=8080"}
	err := unix.Exec(server, []string{server}, env)
	report("exec %s: %v", server, err)
	// PID 1 must never exit: the kernel would panic.
	for {
		time.Sleep(time.Hour)
	}
}

// loadModules inserts the modules listed for this machine, in order; a
// module the kernel already has is fine.
func loadModules() error {
	machine := cmdlineValue("benchmachine")
	if machine == "" {
		return fmt.Errorf("no benchmachine= on the kernel command line: no modules loaded")
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]))
	list := "/etc/bench/modules." + machine
	f, err := os.Open(list)
	if err != nil {
		return fmt.Errorf("module list: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rel := strings.TrimSpace(sc.Text())
		if rel == "" {
			continue
		}
		if err := insmod(filepath.Join(dir, rel)); err != nil {
			report("%v", err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("module list %s: %w", list, err)
	}
	return nil
}

// insmod loads one uncompressed module file.
func insmod(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("insmod: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
		return fmt.Errorf("insmod %s: %w", path, err)
	}
	return nil
}

// network brings lo up, and eth0 up with the floor's address.
func network() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	// virtio_net registers eth0 while its module loads; the wait is only
	// a safety net.
	var eth netlink.Link
	for deadline := time.Now().Add(5 * time.Second); ; {
		eth, err = netlink.LinkByName("eth0")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("eth0: %w", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	addr, err := netlink.ParseAddr(address)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("eth0 address: %w", err)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("eth0 up: %w", err)
	}
	return nil
}

// cmdlineValue returns the value of key= on the kernel command line.
func cmdlineValue(key string) string {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return ""
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// uptime reads CLOCK_BOOTTIME, the clock behind /proc/uptime.
func uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// report prints a problem on the console and carries on.
func report(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "floor: "+format+"\n", args...)
}
