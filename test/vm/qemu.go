package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Machine is a QEMU machine type.
type Machine string

// The machine types the harness boots.
const (
	// Q35 is the PC with PCIe: virtio devices on PCI, ACPI power button,
	// PS/2 keyboard (for Ctrl-Alt-Del).
	Q35 Machine = "q35"
	// MicroVM is QEMU's minimal machine: virtio-mmio devices, ACPI with a
	// generic event device for the power button, no keyboard.
	MicroVM Machine = "microvm"
)

// Machines lists the machine types the harness supports.
func Machines() []Machine { return []Machine{Q35, MicroVM} }

// Defaults of Config.
const (
	// DefaultMemoryMB is the guest's memory when Config.MemoryMB is 0.
	DefaultMemoryMB = 512
	// DefaultCPUs is the number of vCPUs when Config.CPUs is 0.
	DefaultCPUs = 1
	// qmpTimeout bounds every QMP command.
	qmpTimeout = 10 * time.Second
)

// Config describes one VM.
type Config struct {
	// Host is the prepared host (DetectHost); nil detects one.
	Host *Host
	// Machine is Q35 (default) or MicroVM.
	Machine Machine
	// Initramfs is the initramfs to boot; required.
	Initramfs string
	// MemoryMB defaults to DefaultMemoryMB.
	MemoryMB int
	// CPUs defaults to DefaultCPUs.
	CPUs int
	// KernelArgs are appended to the kernel command line (after
	// console=ttyS0 panic=-1 tsc_early_khz=...).
	KernelArgs []string
	// QEMUArgs are appended to QEMU's command line.
	QEMUArgs []string
	// GuestPorts are guest TCP ports forwarded from free ports on the
	// host's 127.0.0.1; see VM.HostPort.
	GuestPorts []int
	// GuestForwards lets the guest reach servers on the host: each maps a
	// guest address (in QEMU's user network, e.g. "10.0.2.100:5000") to a
	// host address ("127.0.0.1:5000"). See GuestForward.
	GuestForwards []GuestForward
	// NoNetwork leaves out the virtio-net NIC.
	NoNetwork bool
	// ConsoleLog is where the raw serial output is written (default: a
	// file in a temporary directory removed by Kill).
	ConsoleLog string
	// Echo, if set, receives the serial output as it arrives.
	Echo io.Writer
}

// GuestForward makes a TCP server on the host reachable from the guest at
// an address of QEMU's user network.
type GuestForward struct {
	Guest string // "10.0.2.100:5000": an unused address in 10.0.2.0/24
	Host  string // "127.0.0.1:5000"
}

// withDefaults fills in the defaults and checks cfg.
func (cfg Config) withDefaults(ctx context.Context) (Config, error) {
	if cfg.Host == nil {
		h, err := DetectHost(ctx, HostOptions{})
		if err != nil {
			return cfg, err
		}
		cfg.Host = h
	}
	if cfg.Machine == "" {
		cfg.Machine = Q35
	}
	if cfg.Machine != Q35 && cfg.Machine != MicroVM {
		return cfg, fmt.Errorf("machine %q: want %q or %q", cfg.Machine, Q35, MicroVM)
	}
	if cfg.Initramfs == "" {
		return cfg, errors.New("vm config: no initramfs")
	}
	if _, err := os.Stat(cfg.Initramfs); err != nil {
		return cfg, fmt.Errorf("vm config: initramfs: %w", err)
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = DefaultMemoryMB
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = DefaultCPUs
	}
	return cfg, nil
}

// KernelCommandLine returns the kernel command line cfg boots with.
func (cfg Config) KernelCommandLine() string {
	var args []string
	if cfg.Host != nil {
		args = cfg.Host.baseKernelArgs()
	}
	return strings.Join(append(args, cfg.KernelArgs...), " ")
}

// qemuArgs returns QEMU's arguments for cfg with the serial console on
// serial ("stdio" or "mon:stdio"), QMP on qmpSocket (none if empty) and
// the given host port for each guest port.
func (cfg Config) qemuArgs(serial, qmpSocket string, ports map[int]int) []string {
	h := cfg.Host
	args := []string{
		"-machine", string(cfg.Machine),
		"-accel", h.Accel,
		"-cpu", "max", // RDRAND: the guest never waits for entropy.
		"-m", strconv.Itoa(cfg.MemoryMB),
		"-smp", strconv.Itoa(cfg.CPUs),
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-no-reboot",
		"-serial", serial,
		"-kernel", h.Kernel.VMLinux,
		"-initrd", cfg.Initramfs,
		"-append", cfg.KernelCommandLine(),
	}
	if qmpSocket != "" {
		args = append(args, "-qmp", "unix:"+qmpSocket+",server=on,wait=off")
	}
	if !cfg.NoNetwork {
		netdev := "user,id=n0,restrict=on"
		for _, guest := range cfg.GuestPorts {
			netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", ports[guest], guest)
		}
		for _, f := range cfg.GuestForwards {
			// A chardev target ("-tcp:HOST") carries one connection
			// for the VM's lifetime; "cmd:" starts socat for each.
			netdev += fmt.Sprintf(",guestfwd=tcp:%s-cmd:socat STDIO TCP:%s", f.Guest, f.Host)
		}
		nic := "virtio-net-pci,netdev=n0,romfile="
		if cfg.Machine == MicroVM {
			nic = "virtio-net-device,netdev=n0"
		}
		args = append(args, "-netdev", netdev, "-device", nic)
	}
	return append(args, cfg.QEMUArgs...)
}

// VM is a running (or exited) QEMU guest.
type VM struct {
	cfg     Config
	cmd     *exec.Cmd
	dir     string
	ports   map[int]int
	started time.Time
	con     *console
	qmp     *qmpClient
	stderr  *lockedBuffer
	serial  *os.File // the write end of the serial console's input

	exited      chan struct{} // closed when QEMU has exited
	consoleDone chan struct{} // closed when all serial output is read
	waitErr     error         // set before exited is closed
	killOnce    sync.Once
	killErr     error

	mu     sync.Mutex
	cursor int // WaitFor looks at lines from here on
}

// Start boots a VM as cfg describes and returns once QEMU runs and its QMP
// socket answers. The VM is killed when ctx ends; call Kill (or use StartT)
// to clean it up in any case.
func Start(ctx context.Context, cfg Config) (*VM, error) {
	cfg, err := cfg.withDefaults(ctx)
	if err != nil {
		return nil, err
	}
	var lastErr error
	// A host port picked as free can be taken before QEMU binds it; pick
	// again when that happens.
	for attempt := 0; attempt < 3; attempt++ {
		v, err := start(ctx, cfg)
		if err == nil {
			return v, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "host forwarding") {
			break
		}
	}
	return nil, lastErr
}

// start makes one attempt at starting QEMU.
func start(ctx context.Context, cfg Config) (*VM, error) {
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "photon-vm-")
	if err != nil {
		return nil, fmt.Errorf("starting VM: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	ports, err := freePorts(cfg.GuestPorts)
	if err != nil {
		return nil, err
	}
	logPath := cfg.ConsoleLog
	if logPath == "" {
		logPath = filepath.Join(dir, "console.log")
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("console log: %w", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("console log: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("console pipe: %w", err)
	}
	// The serial console's input: what Type writes, QEMU reads from its
	// stdin (-serial stdio) and the guest gets as keys.
	inR, inW, err := os.Pipe()
	if err != nil {
		pr.Close()
		pw.Close()
		logFile.Close()
		return nil, fmt.Errorf("console input pipe: %w", err)
	}
	qmpSocket := filepath.Join(dir, "qmp.sock")
	var raw io.Writer = logFile
	if cfg.Echo != nil {
		raw = io.MultiWriter(logFile, cfg.Echo)
	}
	v := &VM{
		cfg:         cfg,
		dir:         dir,
		ports:       ports,
		stderr:      &lockedBuffer{},
		exited:      make(chan struct{}),
		consoleDone: make(chan struct{}),
	}
	v.cmd = exec.Command(cfg.Host.QEMU, cfg.qemuArgs("stdio", qmpSocket, ports)...)
	v.cmd.Stdin = inR
	v.cmd.Stdout = pw
	v.serial = inW
	v.cmd.Stderr = v.stderr
	v.started = time.Now()
	v.con = newConsole(v.started, raw)
	if err := v.cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		inR.Close()
		inW.Close()
		logFile.Close()
		return nil, fmt.Errorf("starting QEMU: %w", err)
	}
	pw.Close()
	inR.Close()
	go func() {
		// Errors here can only come from the log file; the console in
		// memory keeps everything that was read.
		_, _ = io.Copy(v.con, pr)
		pr.Close()
		logFile.Close()
		v.con.close()
		close(v.consoleDone)
	}()
	go func() {
		v.waitErr = v.cmd.Wait()
		close(v.exited)
	}()
	if err := v.connectQMP(qmpSocket); err != nil {
		v.Kill()
		return nil, err
	}
	go func() {
		select {
		case <-ctx.Done():
			v.Kill()
		case <-v.exited:
		}
	}()
	ok = true
	return v, nil
}

// connectQMP dials the QMP socket until QEMU has created it.
func (v *VM) connectQMP(path string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := dialQMP(path, qmpTimeout)
		if err == nil {
			v.qmp = c
			return nil
		}
		select {
		case <-v.exited:
			<-v.consoleDone
			return fmt.Errorf("QEMU exited at start (%v): %s", v.waitErr, strings.TrimSpace(v.stderr.String()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("QEMU's QMP socket did not answer: %w; stderr: %s", err, strings.TrimSpace(v.stderr.String()))
		}
	}
}

// freePorts picks a free host port on 127.0.0.1 for each guest port.
func freePorts(guestPorts []int) (map[int]int, error) {
	ports := map[int]int{}
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, g := range guestPorts {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a host port for guest port %d: %w", g, err)
		}
		listeners = append(listeners, l)
		ports[g] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// Config returns the configuration the VM was started with (defaults
// filled in).
func (v *VM) Config() Config { return v.cfg }

// Started returns when QEMU was started.
func (v *VM) Started() time.Time { return v.started }

// HostPort returns the host port (on 127.0.0.1) forwarded to guestPort,
// or 0 when guestPort is not in Config.GuestPorts.
func (v *VM) HostPort(guestPort int) int { return v.ports[guestPort] }

// Addr returns "127.0.0.1:PORT" for the host side of guestPort.
func (v *VM) Addr(guestPort int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(v.ports[guestPort]))
}

// WaitFor waits until a console line matches re and returns it. It looks
// only at lines after the one the previous WaitFor matched, so a sequence
// of WaitFor calls checks that lines appear in that order. It fails when
// ctx ends or QEMU exits first; the error includes the end of the console.
func (v *VM) WaitFor(ctx context.Context, re *regexp.Regexp) (string, error) {
	l, err := v.WaitForLine(ctx, re)
	return l.Text, err
}

// WaitForLine is WaitFor, returning the line with the time it arrived.
func (v *VM) WaitForLine(ctx context.Context, re *regexp.Regexp) (Line, error) {
	v.mu.Lock()
	from := v.cursor
	v.mu.Unlock()
	for {
		i, line, changed, closed := v.con.find(re, from)
		if i >= 0 {
			v.mu.Lock()
			if i+1 > v.cursor {
				v.cursor = i + 1
			}
			v.mu.Unlock()
			return line, nil
		}
		if closed {
			<-v.exited
			return Line{}, fmt.Errorf("QEMU exited (%s) before the console showed /%s/; console ends:\n%s",
				v.exitDescription(), re, v.ConsoleTail(40))
		}
		select {
		case <-ctx.Done():
			return Line{}, fmt.Errorf("waiting for /%s/ on the console: %w; console ends:\n%s", re, ctx.Err(), v.ConsoleTail(40))
		case <-changed:
		}
	}
}

// Find returns the first console line that matches re, anywhere in the
// output so far (WaitFor's order does not apply).
func (v *VM) Find(re *regexp.Regexp) (Line, bool) {
	i, line, _, _ := v.con.find(re, 0)
	return line, i >= 0
}

// Lines returns the console lines so far.
func (v *VM) Lines() []Line { return v.con.snapshot() }

// Console returns the console output so far, carriage returns removed.
func (v *VM) Console() string { return joinLines(v.con.snapshot()) }

// ConsoleTail returns the last n lines of the console.
func (v *VM) ConsoleTail(n int) string {
	lines := v.con.snapshot()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return joinLines(lines)
}

// Stderr returns what QEMU itself printed (errors, warnings).
func (v *VM) Stderr() string { return v.stderr.String() }

// QMP runs a QMP command with arguments (nil for none; anything that
// encodes to a JSON object) and returns QEMU's "return" value.
func (v *VM) QMP(command string, args any) (json.RawMessage, error) {
	if v.qmp == nil {
		return nil, errQMPUnavailable
	}
	return v.qmp.execute(command, args, qmpTimeout)
}

// Type writes s to the guest's serial console, as keys typed on a
// terminal: Enter is "\r", Ctrl-C "\x03". QEMU hands the bytes to the UART
// as fast as the guest takes them.
func (v *VM) Type(s string) error {
	if v.Exited() {
		return errors.New("typing on the serial console: QEMU has exited")
	}
	if _, err := io.WriteString(v.serial, s); err != nil {
		return fmt.Errorf("typing on the serial console: %w", err)
	}
	return nil
}

// Powerdown presses the ACPI power button (QMP system_powerdown).
func (v *VM) Powerdown() error {
	_, err := v.QMP("system_powerdown", nil)
	return err
}

// SendKeys presses a key combination given as QEMU key codes joined by
// "-", e.g. "ctrl-alt-delete" (QMP send-key).
func (v *VM) SendKeys(combo string) error {
	type key struct {
		Type string `json:"type"`
		Data string `json:"data"`
	}
	var keys []key
	for _, k := range strings.Split(combo, "-") {
		if k == "" {
			return fmt.Errorf("send-key %q: empty key", combo)
		}
		keys = append(keys, key{Type: "qcode", Data: k})
	}
	_, err := v.QMP("send-key", map[string]any{"keys": keys})
	return err
}

// Events returns the QMP events received so far (POWERDOWN, SHUTDOWN with
// its reason, RESET, ...).
func (v *VM) Events() []Event {
	if v.qmp == nil {
		return nil
	}
	return v.qmp.eventsSnapshot()
}

// Wait waits for QEMU to exit and for its console output to be read. It
// fails only when ctx ends first (with the console's end in the error):
// QEMU's exit status means nothing, see ExitCode.
func (v *VM) Wait(ctx context.Context) error {
	select {
	case <-v.exited:
		<-v.consoleDone
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for QEMU to exit: %w; console ends:\n%s", ctx.Err(), v.ConsoleTail(40))
	}
}

// Exited reports whether QEMU has exited.
func (v *VM) Exited() bool { return isClosed(v.exited) }

// ExitCode returns QEMU's exit status, or -1 while it runs or when it was
// killed. It tells nothing about the guest: a panicking guest exits 0.
func (v *VM) ExitCode() int {
	if !v.Exited() || v.cmd.ProcessState == nil {
		return -1
	}
	return v.cmd.ProcessState.ExitCode()
}

// exitDescription renders how QEMU ended; the caller knows it has exited.
func (v *VM) exitDescription() string {
	if v.cmd.ProcessState == nil {
		return fmt.Sprint(v.waitErr)
	}
	s := v.cmd.ProcessState.String()
	if e := strings.TrimSpace(v.stderr.String()); e != "" {
		s += "; stderr: " + e
	}
	return s
}

// Kill stops QEMU (if it still runs), closes QMP and removes the VM's
// temporary directory. It is safe to call more than once and from several
// goroutines; the console stays readable.
func (v *VM) Kill() error {
	v.killOnce.Do(func() {
		if !v.Exited() {
			if err := v.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				v.killErr = fmt.Errorf("killing QEMU: %w", err)
			}
		}
		select {
		case <-v.exited:
		case <-time.After(10 * time.Second):
			v.killErr = errors.Join(v.killErr, errors.New("QEMU did not exit 10s after SIGKILL"))
		}
		select {
		case <-v.consoleDone:
		case <-time.After(5 * time.Second):
		}
		v.serial.Close()
		if v.qmp != nil {
			v.qmp.close()
		}
		if err := os.RemoveAll(v.dir); err != nil {
			v.killErr = errors.Join(v.killErr, fmt.Errorf("removing VM directory: %w", err))
		}
	})
	return v.killErr
}

// lockedBuffer is a bytes.Buffer safe for one writer and many readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// RunInteractive boots cfg with the serial console and QEMU's monitor on
// this process's terminal (-serial mon:stdio; Ctrl-A X quits, Ctrl-A C
// switches to the monitor) and returns when QEMU exits.
func RunInteractive(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults(ctx)
	if err != nil {
		return err
	}
	ports, err := freePorts(cfg.GuestPorts)
	if err != nil {
		return err
	}
	for _, g := range cfg.GuestPorts {
		fmt.Fprintf(os.Stderr, "guest port %d is at 127.0.0.1:%d (for example: curl http://127.0.0.1:%d/)\n", g, ports[g], ports[g])
	}
	cmd := exec.CommandContext(ctx, cfg.Host.QEMU, cfg.qemuArgs("mon:stdio", "", ports)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("QEMU: %w", err)
	}
	return nil
}
