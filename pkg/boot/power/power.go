// Package power turns requests to stop the machine — signals to PID 1, the
// ACPI power button, the control socket — into one orderly shutdown that
// ends in reboot(2).
package power

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Action is what the machine does at the end of a shutdown.
type Action int

// The actions, as reboot(2) knows them.
const (
	Poweroff Action = iota
	Reboot
	Halt
)

func (a Action) String() string {
	switch a {
	case Poweroff:
		return "poweroff"
	case Reboot:
		return "reboot"
	case Halt:
		return "halt"
	}
	return "unknown"
}

// RebootCmd is the reboot(2) command for the action, and its name.
func (a Action) RebootCmd() (int, string) {
	switch a {
	case Reboot:
		return unix.LINUX_REBOOT_CMD_RESTART, "RESTART"
	case Halt:
		return unix.LINUX_REBOOT_CMD_HALT, "HALT"
	}
	return unix.LINUX_REBOOT_CMD_POWER_OFF, "POWER_OFF"
}

// Request asks for a shutdown.
type Request struct {
	Action Action
	// Reason says who asked, for the console: "SIGTERM", "power button".
	Reason string
}

// sigRTMin is glibc's SIGRTMIN as systemd sees it: the kernel's 32 plus the
// two that glibc keeps for itself.
const sigRTMin = 34

// signalActions maps the signals PID 1 obeys to their actions, as systemd
// and sysvinit define them. SIGINT is what the kernel sends for
// Ctrl-Alt-Del once reboot(CAD_OFF) was called.
var signalActions = map[syscall.Signal]Action{
	unix.SIGINT:                  Reboot,
	unix.SIGTERM:                 Poweroff,
	unix.SIGPWR:                  Poweroff,
	unix.SIGUSR1:                 Halt,
	unix.SIGUSR2:                 Poweroff,
	syscall.Signal(sigRTMin + 3): Halt,
	syscall.Signal(sigRTMin + 4): Poweroff,
	syscall.Signal(sigRTMin + 5): Reboot,
}

// Signals returns the signals that ForSignal understands, for signal.Notify.
func Signals() []os.Signal {
	out := make([]os.Signal, 0, len(signalActions))
	for s := range signalActions {
		out = append(out, s)
	}
	return out
}

// ForSignal returns the request a signal to PID 1 makes.
func ForSignal(sig os.Signal) (Request, bool) {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return Request{}, false
	}
	a, ok := signalActions[s]
	if !ok {
		return Request{}, false
	}
	return Request{Action: a, Reason: SignalName(s)}, true
}

// SignalName names a signal the way people write it ("SIGTERM",
// "SIGRTMIN+4").
func SignalName(s syscall.Signal) string {
	if s >= sigRTMin && s <= 64 {
		if s == sigRTMin {
			return "SIGRTMIN"
		}
		return "SIGRTMIN+" + itoa(int(s-sigRTMin))
	}
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return "signal " + itoa(int(s))
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
