package boot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/syncbuf"
	"github.com/photon-init/photon-init/pkg/boot/power"
	"github.com/photon-init/photon-init/pkg/boot/reaper"
	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/shell/shelltest"
)

// consoleMachine returns a machine whose console is a pseudo-terminal, as
// if booted with console=pts/N and photon.debug=debug.
func consoleMachine(t *testing.T, debug string) (*Machine, *shelltest.PTY) {
	t.Helper()
	pty := shelltest.Open(t)
	dev := strings.TrimPrefix(pty.SlavePath, "/dev/")
	m := newMachine(Options{}, &syncbuf.Buffer{})
	// Set by hand: console= names a device directly under /dev.
	m.cmdline = Cmdline{Consoles: []string{dev}, Debug: debug}
	m.settings = Merge(&config.Config{}, m.cmdline)
	if errs := m.console.Open("/dev", []string{dev}); len(errs) > 0 {
		t.Fatal(errs)
	}
	return m, pty
}

func TestDebugShellNotOffered(t *testing.T) {
	m, _ := consoleMachine(t, "")
	m.cmdline.Debug, m.settings.Debug = "", ""
	if err := m.startDebugShell(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.debug.mu.Lock()
	defer m.debug.mu.Unlock()
	if m.debug.running {
		t.Error("a debug shell session runs without photon.debug")
	}
}

func TestDebugShellBuiltin(t *testing.T) {
	m, pty := consoleMachine(t, "1")
	m.debug.program = "/nonexistent/sh" // a machine without a shell
	if err := m.startDebugShell(context.Background()); err != nil {
		t.Fatal(err)
	}
	// photon.debug set: nothing until Enter.
	time.Sleep(100 * time.Millisecond)
	if strings.Contains(pty.Screen(), "photon-init debug shell:") {
		t.Fatalf("a shell started without Enter: %q", pty.Screen())
	}
	pty.Type(t, "\r")
	pty.WaitFor(t, "photon-init debug shell: Enter was pressed on the console (photon.debug is set)")
	pty.WaitFor(t, "# ")
	pty.Type(t, "echo hi\r")
	pty.WaitFor(t, "hi\r\n")

	// photon-init's messages are written around the prompt.
	pty.WaitFor(t, "# ")
	pty.Type(t, "ech")
	pty.WaitFor(t, "ech")
	m.log.Warn("a message from the machine")
	pty.WaitFor(t, "\r\x1b[K[")
	pty.WaitFor(t, "photon-init: WARNING a message from the machine\r\n")
	pty.WaitFor(t, "# ech\x1b[K")
	pty.Type(t, "o again\r")
	pty.WaitFor(t, "again\r\n")

	// poweroff asks the machine.
	pty.Type(t, "poweroff\r")
	select {
	case req := <-m.requests:
		if req.Action != power.Poweroff || req.Reason != "debug shell" {
			t.Errorf("request %+v", req)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("poweroff made no request")
	}

	// The shell ends; Enter gives another; an emergency starts one at once.
	pty.Type(t, "exit\r")
	pty.WaitFor(t, "the debug shell ended; press Enter on this console for another")
	m.emergencyShell(errors.New("boot step apifs: mount tmpfs on /run: not a directory"))
	pty.WaitFor(t, "photon-init debug shell: the boot failed: boot step apifs: mount tmpfs on /run: not a directory")
	pty.WaitFor(t, "# ")
	// An emergency while a shell runs only logs.
	m.emergencyShell(errors.New("second"))
	pty.Type(t, "exit\r")
	pty.WaitFor(t, "the debug shell ended")
	time.Sleep(200 * time.Millisecond)
	if strings.Contains(pty.Screen(), "the boot failed: second") {
		t.Error("an emergency during a shell started another one")
	}
}

func TestDebugShellProgram(t *testing.T) {
	if !isExecutable(shellProgram) {
		t.Skipf("no %s here", shellProgram)
	}
	m, pty := consoleMachine(t, "shell")
	r := reaper.New(reaper.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	m.opts.Reaper = r
	if err := m.startDebugShell(context.Background()); err != nil {
		t.Fatal(err)
	}
	pty.WaitFor(t, "photon-init debug shell: photon.debug=shell is on the kernel command line")
	pty.WaitFor(t, "/bin/sh starts")
	pty.Type(t, "echo from-sh-$((6*7))\n")
	pty.WaitFor(t, "from-sh-42")
	pty.Type(t, "exit\n")
	pty.WaitFor(t, "the debug shell ended")
	if s := r.Stats(); s.Delivered == 0 {
		t.Errorf("the shell was not started through the reaper: %+v", s)
	}
}

func TestDebugShellSandbox(t *testing.T) {
	m := newMachine(Options{Sandbox: true}, &syncbuf.Buffer{})
	m.settings.Debug = "shell"
	if err := m.startDebugShell(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.emergencyShell(errors.New("x"))
	m.debug.mu.Lock()
	defer m.debug.mu.Unlock()
	if m.debug.running {
		t.Error("a debug shell session runs in sandbox mode")
	}
}

func TestKmsgLevel(t *testing.T) {
	tests := []struct {
		rec   string
		level int
		ok    bool
	}{
		{"6,339,5140900,-;NET: Registered protocol family 10", 6, true},
		{"3,1,2,-;error", 3, true},
		{"14,2,3,-;user facility, info", 6, true},
		{";no priority", 0, false},
		{"x,1,2,-;bad", 0, false},
	}
	for _, tt := range tests {
		l, ok := kmsgLevel([]byte(tt.rec))
		if l != tt.level || ok != tt.ok {
			t.Errorf("kmsgLevel(%q) = %d, %v; want %d, %v", tt.rec, l, ok, tt.level, tt.ok)
		}
	}
}

func TestFollowKernelLog(t *testing.T) {
	// A FIFO stands for /dev/kmsg: records are written to it as the kernel
	// would give them.
	kmsg := filepath.Join(t.TempDir(), "kmsg")
	if err := unix.Mkfifo(kmsg, 0o600); err != nil {
		t.Fatal(err)
	}
	var redraws atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- followKernelLog(ctx, kmsg, 5, 20*time.Millisecond, func() { redraws.Add(1) })
	}()
	w, err := os.OpenFile(kmsg, os.O_WRONLY, 0) // waits for the reader
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Level 6 is not below the console level of 5: no redraw.
	w.Write([]byte("6,100,5000,-;an info line\n SUBSYSTEM=x\n"))
	time.Sleep(200 * time.Millisecond)
	if n := redraws.Load(); n != 0 {
		t.Errorf("%d redraws after an info line", n)
	}
	// Two error lines close together: one redraw after both.
	w.Write([]byte("3,101,5001,-;an error\n"))
	w.Write([]byte("3,102,5002,-;another error\n"))
	deadline := time.Now().Add(5 * time.Second)
	for redraws.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := redraws.Load(); n != 1 {
		t.Errorf("%d redraws after two error lines, want 1", n)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("followKernelLog did not end with its context")
	}
}

func TestKmsgShown(t *testing.T) {
	tests := []struct {
		data  string
		level int
		want  bool
	}{
		{"6,1,2,-;info\n", 7, true},
		{"6,1,2,-;info\n", 6, false},
		{"6,1,2,-;info\n SUBSYSTEM=pci\n", 4, false},
		{"7,1,2,-;debug\n4,2,3,-;warning\n", 5, true},
		{"garbage", 7, false},
	}
	for _, tt := range tests {
		if got := kmsgShown([]byte(tt.data), tt.level); got != tt.want {
			t.Errorf("kmsgShown(%q, %d) = %v", tt.data, tt.level, got)
		}
	}
}
