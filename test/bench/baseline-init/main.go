// Command baseline-init is the benchmark baseline for photon-init: the
// least a static Go program can do as PID 1 and still report its timing.
//
// It mounts /proc, prints the guest uptime at which it started
// ("baseline: pid1 start uptime X"), prints a "boot complete" line in
// photon-init's format and powers the machine off. The harness boots it
// from the same kind of initramfs as photon-init, so the difference
// between the two is what photon-init's own boot work costs.
package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// clockBoottime is CLOCK_BOOTTIME from <linux/time.h>; the syscall
// package does not name it.
const clockBoottime = 7

func main() {
	start := uptime()
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "baseline-init: not PID 1, refusing to power the machine off")
		os.Exit(2)
	}
	if err := os.MkdirAll("/proc", 0o555); err != nil {
		report("mkdir /proc: %v", err)
	}
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		report("mount /proc: %v", err)
	}
	console := openConsole()
	fmt.Fprintf(console, "baseline: pid1 start uptime %.3fs\n", start.Seconds())
	now := uptime()
	fmt.Fprintf(console, "baseline: boot complete: %.3fs since kernel start, %.3fs since PID-1 start\n",
		now.Seconds(), (now - start).Seconds())
	drain(console)
	syscall.Sync()
	if err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		report("reboot(POWER_OFF): %v", err)
	}
	// PID 1 must never exit: the kernel would panic.
	for {
		time.Sleep(time.Hour)
	}
}

// uptime reads CLOCK_BOOTTIME, the clock behind /proc/uptime, with
// nanosecond resolution.
func uptime() time.Duration {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockBoottime, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

// openConsole returns /dev/console when it can be opened, else stdout
// (which the kernel connects to /dev/console when the initramfs has it).
func openConsole() *os.File {
	f, err := os.OpenFile("/dev/console", os.O_WRONLY|syscall.O_NOCTTY, 0)
	if err != nil {
		return os.Stdout
	}
	return f
}

// drain waits until the terminal has transmitted everything written to
// it (tcdrain), so the last line reaches the serial port before power-off.
func drain(f *os.File) {
	const tcsbrk = 0x5409 // TCSBRK with a non-zero argument is tcdrain.
	_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), tcsbrk, 1)
}

// report prints a problem to the kernel log's console and carries on.
func report(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "baseline: "+format+"\n", args...)
}
