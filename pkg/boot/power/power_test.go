package power

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
)

func TestForSignal(t *testing.T) {
	tests := []struct {
		sig    syscall.Signal
		action Action
		name   string
	}{
		{unix.SIGINT, Reboot, "SIGINT"},
		{unix.SIGTERM, Poweroff, "SIGTERM"},
		{unix.SIGPWR, Poweroff, "SIGPWR"},
		{unix.SIGUSR1, Halt, "SIGUSR1"},
		{unix.SIGUSR2, Poweroff, "SIGUSR2"},
		{syscall.Signal(37), Halt, "SIGRTMIN+3"},
		{syscall.Signal(38), Poweroff, "SIGRTMIN+4"},
		{syscall.Signal(39), Reboot, "SIGRTMIN+5"},
	}
	for _, tt := range tests {
		req, ok := ForSignal(tt.sig)
		if !ok || req.Action != tt.action || req.Reason != tt.name {
			t.Errorf("ForSignal(%d) = %+v, %v; want %v %s", tt.sig, req, ok, tt.action, tt.name)
		}
	}
	if _, ok := ForSignal(unix.SIGHUP); ok {
		t.Errorf("SIGHUP must not shut down")
	}
	if len(Signals()) != len(tests) {
		t.Errorf("Signals() has %d entries, want %d", len(Signals()), len(tests))
	}
}

func TestRebootCmd(t *testing.T) {
	for a, want := range map[Action]int{Poweroff: unix.LINUX_REBOOT_CMD_POWER_OFF, Reboot: unix.LINUX_REBOOT_CMD_RESTART, Halt: unix.LINUX_REBOOT_CMD_HALT} {
		if got, _ := a.RebootCmd(); got != want {
			t.Errorf("%v.RebootCmd() = %x, want %x", a, got, want)
		}
	}
}

func TestHasKey(t *testing.T) {
	tests := []struct {
		bitmap string
		code   int
		want   bool
	}{
		{"10000000000000 0", keyPower, true}, // the ACPI power button
		{"0", keyPower, false},
		{"4 0 0 0", 3*64 + 2, true}, // bit 2 of the fourth word from the right
		{"", keyPower, false},
		{"zz 0", keyPower, false},
	}
	for _, tt := range tests {
		if got := hasKey(tt.bitmap, tt.code); got != tt.want {
			t.Errorf("hasKey(%q, %d) = %v, want %v", tt.bitmap, tt.code, got, tt.want)
		}
	}
}

func TestFindPowerButtons(t *testing.T) {
	sys := t.TempDir()
	for name, caps := range map[string]string{"event0": "10000000000000 0", "event1": "3 0", "mouse0": "10000000000000 0"} {
		dir := filepath.Join(sys, name, "device/capabilities")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "key"), []byte(caps+"\n"), 0o644)
	}
	got, err := FindPowerButtons(sys, "/dev/input")
	if err != nil || len(got) != 1 || got[0] != "/dev/input/event0" {
		t.Errorf("FindPowerButtons = %v, %v", got, err)
	}
}

func TestReadButton(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Request, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go readButton(ctx, log, r, out)
	var buf bytes.Buffer
	for _, ev := range []inputEvent{
		{Type: evKey, Code: 30, Value: 1},       // 'a': ignored
		{Type: evKey, Code: keyPower, Value: 0}, // release: ignored
		{Type: 0, Code: 0, Value: 0},            // SYN
		{Type: evKey, Code: keyPower, Value: 1}, // press
	} {
		binary.Write(&buf, binary.NativeEndian, ev)
	}
	w.Write(buf.Bytes())
	select {
	case req := <-out:
		if req.Action != Poweroff || req.Reason != "power button" {
			t.Errorf("request = %+v", req)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no request for a power button press")
	}
	select {
	case req := <-out:
		t.Errorf("extra request %+v", req)
	case <-time.After(50 * time.Millisecond):
	}
	w.Close()
}

func TestParseStat(t *testing.T) {
	comm, state, flags, ok := parseStat("42 (a (b) c) S 1 42 42 0 -1 4194560 0 0")
	if !ok || comm != "a (b) c" || state != "S" || flags != 4194560 {
		t.Errorf("parseStat = %q %q %d %v", comm, state, flags, ok)
	}
	if _, _, _, ok := parseStat("garbage"); ok {
		t.Errorf("garbage parsed")
	}
}

type lockedBuf struct {
	ch chan string
}

func (b *lockedBuf) Write(p []byte) (int, error) { b.ch <- string(p); return len(p), nil }

// TestShutdownSequence runs the whole sequence as PID 1 of a new PID and
// mount namespace, with processes that obey SIGTERM and one that ignores it.
func TestShutdownSequence(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWPID|unix.CLONE_NEWNS) {
		return
	}
	nstest.Private(t)
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		t.Fatal(err)
	}
	// A mount below a private tmpfs, to see the unmount step at work.
	dir := t.TempDir()
	if err := unix.Mount("x", dir, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	for _, script := range []string{"sleep 100", `trap "" TERM; while :; do sleep 0.05; done`} {
		c := exec.Command("/bin/sh", "-c", script)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	exited := make(chan struct{}, len(cmds))
	for _, c := range cmds {
		go func() { c.Wait(); exited <- struct{}{} }()
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(UserProcesses("/proc")); n < 2 {
		t.Fatalf("only %d processes before shutdown", n)
	}
	lines := &lockedBuf{ch: make(chan string, 100)}
	var rebooted []int
	s := &Shutdown{
		Log:             slog.New(slog.NewTextHandler(lines, nil)),
		SignalProcesses: true,
		Unmount:         true,
		Grace:           500 * time.Millisecond,
		SyncTimeout:     5 * time.Second,
		UnmountTimeout:  time.Second,
		Before:          []Step{{Name: "containers", Run: func(context.Context) error { return nil }}},
		Reboot:          func(cmd int) error { rebooted = append(rebooted, cmd); return nil },
	}
	start := time.Now()
	if err := s.Run(Request{Action: Reboot, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	close(lines.ch)
	var log strings.Builder
	for l := range lines.ch {
		log.WriteString(l)
	}
	out := log.String()
	t.Logf("took %v\n%s", took, out)
	order := []string{"reboot requested (test)", "shutdown: containers", "shutdown: stop-processes", "still running after SIGTERM", "shutdown: kill-remaining", "shutdown: sync", "shutdown: unmount", "shutdown: reboot(RESTART)"}
	pos := 0
	for _, want := range order {
		i := strings.Index(out[pos:], want)
		if i < 0 {
			t.Fatalf("log lacks %q after position %d", want, pos)
		}
		pos += i
	}
	if len(rebooted) != 1 || rebooted[0] != unix.LINUX_REBOOT_CMD_RESTART {
		t.Errorf("reboot calls = %v", rebooted)
	}
	for range cmds {
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			t.Fatal("a process survived the shutdown")
		}
	}
	if left := UserProcesses("/proc"); len(left) != 0 {
		t.Errorf("processes left: %v", left)
	}
	if mounted, _ := isMountpoint(dir); mounted {
		t.Errorf("%s still mounted", dir)
	}
}

func isMountpoint(p string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return false, err
	}
	if err := unix.Stat(filepath.Dir(p), &parent); err != nil {
		return false, err
	}
	return st.Dev != parent.Dev, nil
}
