package boot

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	m := newMachine(Options{}, &syncBuffer{})
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
	m := newMachine(Options{Sandbox: true}, &syncBuffer{})
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
	w, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("cannot write the kernel log here: %v", err)
	}
	defer w.Close()
	var redraws atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- followKernelLog(ctx, "/dev/kmsg", 5, 20*time.Millisecond, func() { redraws.Add(1) })
	}()
	time.Sleep(100 * time.Millisecond)
	// Level 6 is below no console level of 5: no redraw. Level 3 is.
	w.Write([]byte("<6>photon-init unit test: an info line (no redraw)\n"))
	time.Sleep(200 * time.Millisecond)
	if n := redraws.Load(); n != 0 {
		t.Errorf("%d redraws after an info line", n)
	}
	w.Write([]byte("<3>photon-init unit test: two error lines\n"))
	w.Write([]byte("<3>photon-init unit test: (one redraw after both)\n"))
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
