package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/boot/power"
	"github.com/photon-init/photon-init/pkg/shell"
)

// The debug shell on the console.
//
// It is offered only when the kernel command line has photon.debug, or when
// the boot failed (the emergency state): a serial console is often
// reachable by whoever can reach the hypervisor or the serial concentrator,
// and a shell there is an unauthenticated root shell, so it must be asked
// for by whoever controls the kernel command line. docs/debugging.md says
// more.
//
//	photon.debug          Enter on the console starts a shell
//	photon.debug=shell    a shell starts at once on the console
//	photon.debug=builtin  the same, with the built-in shell even where /bin/sh exists
//
// The shell is the machine's /bin/sh when it has one, or the shell built
// into photon-init (package shell), with photonctl's verbs run as
// "photon-init ctl VERB" on the console. It runs in goroutines of PID 1 and
// its programs are started through the reaper; when it ends, Enter on the
// console starts another.

// shellProgram is the machine's own shell, used when it exists.
const shellProgram = "/bin/sh"

// ctlProgram is photon-init itself, run as "ctl" for photonctl's verbs: the
// running binary, even after a switch_root has freed the initramfs.
const ctlProgram = "/proc/self/exe"

// kernelRedrawDelay is how long after the last kernel message the prompt
// is redrawn: the kernel prints to the console itself, after the message
// is readable from /dev/kmsg.
const kernelRedrawDelay = 150 * time.Millisecond

// debugConsole is the state of the debug shell on the console. Its zero
// value is ready.
type debugConsole struct {
	mu      sync.Mutex
	running bool        // the session goroutine runs
	active  bool        // a shell runs now
	tty     *os.File    // the console, while waiting for Enter
	wake    chan string // a reason to start a shell at once
	// program is the machine's own shell, used when it exists; "" means
	// shellProgram. (init.yaml may name one some day.)
	program string
}

// wakeChan returns the wake channel, made on first use. Lock held.
func (d *debugConsole) wakeChan() chan string {
	if d.wake == nil {
		d.wake = make(chan string, 1)
	}
	return d.wake
}

// startDebugShell is a boot step: with photon.debug set it starts watching
// the console for Enter, or starts a shell at once for photon.debug=shell
// (or =builtin).
func (m *Machine) startDebugShell(ctx context.Context) error {
	debug := m.Settings().Debug
	switch {
	case debug == "":
		m.log.Debug("debug shell: not offered (photon.debug is not on the kernel command line)")
		return nil
	case m.opts.Sandbox:
		m.log.Info("debug shell: not offered in sandbox mode")
		return nil
	}
	reason := ""
	if debug == "shell" || debug == "builtin" {
		reason = "photon.debug=" + debug + " is on the kernel command line"
	}
	m.debugShell(reason)
	if reason == "" {
		path, _ := m.consoleTTY()
		m.notice(fmt.Sprintf("debug: press Enter on %s for a debug shell (photon.debug is set)", path))
	}
	return nil
}

// emergencyShell starts a shell on the console at once because the boot
// failed, unless one runs there already (the error shows in it).
func (m *Machine) emergencyShell(err error) {
	if m.opts.Sandbox {
		return
	}
	m.debugShell("the boot failed: " + err.Error())
}

// debugShell makes sure the session runs, and starts a shell at once when
// reason is not "" (otherwise Enter does).
func (m *Machine) debugShell(reason string) {
	d := &m.debug
	d.mu.Lock()
	if d.running {
		tty := d.tty
		if reason != "" && !d.active {
			select {
			case d.wakeChan() <- reason:
			default:
			}
			if tty != nil {
				tty.SetReadDeadline(time.Now()) // end the wait for Enter
			}
		}
		d.mu.Unlock()
		return
	}
	d.running = true
	d.wakeChan()
	d.mu.Unlock()
	safe.Go(m.log, "debug shell", func() {
		defer func() {
			d.mu.Lock()
			d.running = false
			d.mu.Unlock()
		}()
		m.debugSession(reason)
	})
}

// consoleTTY returns the device the shell runs on — the last console= of
// the kernel command line, which /dev/console is — and the name of the
// console output that writes to it.
func (m *Machine) consoleTTY() (path, output string) {
	m.mu.Lock()
	consoles := m.cmdline.Consoles
	m.mu.Unlock()
	if len(consoles) > 0 {
		last := consoles[len(consoles)-1]
		for _, d := range m.console.Devices() {
			if d == last {
				return "/dev/" + last, last
			}
		}
	}
	return "/dev/console", "stderr"
}

// debugSession runs shells on the console for ever: the first at once
// when reason is not "", the others when Enter is pressed. A console that
// cannot be read is opened again after a pause.
func (m *Machine) debugSession(reason string) {
	path, output := m.consoleTTY()
	for {
		tty, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			m.log.Error("debug shell: no console to run on", "err", err)
			return
		}
		for {
			if reason == "" {
				if reason, err = m.debug.waitEnter(tty); err != nil {
					m.log.Warn("debug shell: reading the console failed; trying again in 5s", "err", err)
					break
				}
			}
			m.runShell(tty, output, reason)
			select {
			case <-m.debug.wake: // an emergency seen in that shell
			default:
			}
			reason = ""
			fmt.Fprintln(tty, "photon-init: the debug shell ended; press Enter on this console for another")
		}
		tty.Close()
		time.Sleep(5 * time.Second)
	}
}

// waitEnter reads the console (in its normal line mode) until Enter is
// pressed, or a reason to start a shell comes.
func (d *debugConsole) waitEnter(tty *os.File) (string, error) {
	d.mu.Lock()
	d.tty = tty
	wake := d.wakeChan()
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.tty = nil
		d.mu.Unlock()
	}()
	buf := make([]byte, 256)
	for {
		select {
		case r := <-wake:
			tty.SetReadDeadline(time.Time{})
			return r, nil
		default:
		}
		n, err := tty.Read(buf)
		if bytes.ContainsAny(buf[:n], "\r\n") {
			return "Enter was pressed on the console (photon.debug is set)", nil
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			tty.SetReadDeadline(time.Time{})
		case err != nil:
			return "", err
		case n == 0:
			return "", io.EOF
		}
	}
}

// runShell runs one shell on the console: the machine's /bin/sh, or the
// built-in one.
func (m *Machine) runShell(tty *os.File, output, reason string) {
	d := &m.debug
	d.mu.Lock()
	d.active = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.active = false
		d.mu.Unlock()
	}()
	banner := "photon-init debug shell: " + reason
	m.log.Info("debug shell started", "console", tty.Name())
	program := d.program
	m.mu.Lock()
	if m.config != nil && m.config.Debug.Shell != "" {
		program = m.config.Debug.Shell // init.yaml's debug.shell
	}
	m.mu.Unlock()
	if program == "" {
		program = shellProgram
	}
	if m.Settings().Debug != "builtin" && isExecutable(program) {
		fmt.Fprintf(tty, "%s\n%s starts; photon-init and the containers keep running. \"exit\" leaves it.\n", banner, program)
		code, err := shell.RunOnTerminal(tty, exec.Command(program, "-i"), m.runProgram)
		if err == nil {
			m.log.Info("debug shell ended", "shell", program, "exit", code)
			return
		}
		m.log.Error("debug shell: "+program+" did not run; the built-in shell follows", "err", err)
	}
	sh, err := shell.New(shell.Options{
		Terminal:   tty,
		Banner:     banner + "\nThe built-in shell; photon-init and the containers keep running. \"help\" lists the commands, \"exit\" or Ctrl-D leaves it.",
		Log:        m.log,
		Commands:   shell.CtlCommands(shell.ProgramCtl(ctlProgram, "ctl")),
		RunProgram: m.runProgram,
		Power:      m.shellPower,
	})
	if err != nil {
		m.log.Error("debug shell", "err", err)
		return
	}
	detach := m.console.Attach(output, sh.Editor())
	defer detach()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	safe.Go(m.log, "debug shell: kernel messages", func() {
		if err := followKernelLog(ctx, "/dev/kmsg", consoleLogLevel(), kernelRedrawDelay, sh.Editor().Redraw); err != nil && ctx.Err() == nil {
			m.log.Debug("debug shell: not redrawing after kernel messages", "err", err)
		}
	})
	if err := sh.Run(ctx); err != nil {
		m.log.Warn("debug shell", "err", err)
	}
	m.log.Info("debug shell ended")
}

// isExecutable reports whether path is an executable file.
func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// runProgram starts a program of the debug shell through the reaper and
// waits for it.
func (m *Machine) runProgram(cmd *exec.Cmd) (int, error) {
	r := m.opts.Reaper
	if r == nil {
		return -1, errors.New("no reaper to start programs through")
	}
	h, err := r.Start(cmd)
	if err != nil {
		return -1, err
	}
	return h.Wait().ExitCode(), nil
}

// shellPower is the shell's poweroff, reboot and halt: the machine's own
// orderly shutdown.
func (m *Machine) shellPower(action string) error {
	for _, a := range []power.Action{power.Poweroff, power.Reboot, power.Halt} {
		if a.String() == action {
			m.Request(power.Request{Action: a, Reason: "debug shell"})
			return nil
		}
	}
	return fmt.Errorf("unknown power action %q", action)
}

// consoleLogLevel returns the kernel's console log level (the first field
// of /proc/sys/kernel/printk): messages of a lower level reach the console.
func consoleLogLevel() int {
	data, err := os.ReadFile("/proc/sys/kernel/printk")
	if err == nil {
		if f := strings.Fields(string(data)); len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	return 7
}

// followKernelLog calls redraw delay after the kernel logged a message
// that reaches the console (its level is below level), so that a prompt
// the kernel wrote over comes back. It reads kmsg (/dev/kmsg) from its end
// until ctx ends.
func followKernelLog(ctx context.Context, kmsg string, level int, delay time.Duration, redraw func()) error {
	f, err := os.Open(kmsg)
	if err != nil {
		return err
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	// From the end: only new messages. (A FIFO, as in tests, cannot seek
	// and has no past anyway.)
	if _, err := f.Seek(0, io.SeekEnd); err != nil && !errors.Is(err, syscall.ESPIPE) {
		return fmt.Errorf("seek %s: %w", kmsg, err)
	}
	timer := time.AfterFunc(time.Hour, func() { _ = safe.Call("redraw", func() error { redraw(); return nil }) })
	timer.Stop()
	defer timer.Stop()
	buf := make([]byte, 8192)
	for {
		n, err := f.Read(buf)
		if errors.Is(err, syscall.EPIPE) {
			continue // records were overwritten before we read them
		}
		if err != nil {
			return err
		}
		if kmsgShown(buf[:n], level) {
			timer.Reset(delay)
		}
	}
}

// kmsgShown reports whether a read of kmsg holds a record that the kernel
// prints on the console: its level is below the console's. /dev/kmsg gives
// one record a read; its continuation lines start with a space.
func kmsgShown(data []byte, level int) bool {
	for _, rec := range bytes.Split(data, []byte("\n")) {
		if l, ok := kmsgLevel(rec); ok && l < level {
			return true
		}
	}
	return false
}

// kmsgLevel returns the level of a /dev/kmsg record
// ("PRIORITY,SEQ,TIME,FLAGS;message"; the level is PRIORITY's low 3 bits).
func kmsgLevel(rec []byte) (int, bool) {
	i := bytes.IndexByte(rec, ',')
	if i <= 0 {
		return 0, false
	}
	p, err := strconv.Atoi(string(rec[:i]))
	if err != nil {
		return 0, false
	}
	return p & 7, true
}
