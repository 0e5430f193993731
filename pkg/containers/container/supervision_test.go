package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
	"github.com/photon-init/photon-init/pkg/containers/notify"
)

// nextMessage waits for a notification of c.
func nextMessage(t *testing.T, c *Container) notify.Message {
	t.Helper()
	select {
	case m, ok := <-c.Notifications():
		if !ok {
			t.Fatal("Notifications closed")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10s")
	}
	return notify.Message{}
}

// A container's process, as a user other than root, reaches the socket
// through the mount namespace with go-systemd's daemon.SdNotify.
func TestNotifyFromContainer(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	c := e.start(t, &manifest.Container{
		Name: "notifier", User: "app", Watchdog: 2 * time.Second,
		Command: []string{"notify", "READY=1\nSTATUS=serving", "STATUS=still serving"},
	}, img)
	if got := c.Watchdog(); got != 2*time.Second {
		t.Errorf("Watchdog %v", got)
	}
	if want := filepath.Join(e.dir, "notify", "notifier", "notify.sock"); c.NotifySocket() != want {
		t.Errorf("NotifySocket %q, want %q", c.NotifySocket(), want)
	}
	m := nextMessage(t, c)
	if !m.Ready || m.Status != "serving" {
		t.Errorf("first message %+v", m)
	}
	if m.Sender == nil || m.Sender.PID != c.Pid() || m.Sender.UID != 1000 {
		t.Errorf("sender %+v, want the container's PID 1 (%d) as uid 1000", m.Sender, c.Pid())
	}
	if m = nextMessage(t, c); m.Ready || m.Status != "still serving" {
		t.Errorf("second message %+v", m)
	}
	waitLine(t, e.console, "notifier", "notified")
	if err := c.Stop(context.Background(), 0, time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-c.Notifications():
		if ok {
			t.Error("a message after the exit")
		}
	case <-time.After(5 * time.Second):
		t.Error("Notifications not closed after the exit")
	}
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "notify", "notifier")); !os.IsNotExist(err) {
		t.Errorf("notify directory after Destroy: %v", err)
	}

	// The first process has the watchdog: WATCHDOG_USEC and WATCHDOG_PID
	// as go-systemd's SdWatchdogEnabled reads them.
	c = e.start(t, &manifest.Container{Name: "dog", Command: []string{"watchdog"}, Watchdog: 1500 * time.Millisecond}, img)
	if m := nextMessage(t, c); !m.Watchdog {
		t.Errorf("watchdog message %+v", m)
	}
	waitLine(t, e.console, "dog", "watchdog=1.5s err=<nil>")

	// A container whose user mount takes the socket's directory gets
	// no socket, and a closed channel.
	c = e.start(t, &manifest.Container{Name: "nosock", Command: []string{"exit", "0"},
		Tmpfs: []string{NotifySocketDir}}, img)
	if _, ok := <-c.Notifications(); ok || c.NotifySocket() != "" {
		t.Errorf("a container without a socket: %q", c.NotifySocket())
	}
}

// With mem_limit 16m, a hog as the first process is OOM-killed and the
// exit says so; a hog as a child is reported while the container runs,
// and the first process's later exit is not taken for an OOM kill.
func TestOOMKills(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	if !hasControllers() {
		t.Skip("no memory controller in this cgroup setup")
	}
	if raceEnabled {
		t.Skip("with the race detector, libcontainer's init (this test binary) needs more than 16 MiB before it runs the container")
	}
	img := e.testImage(t)
	c := e.start(t, &manifest.Container{Name: "hog", Command: []string{"hog"}, MemLimit: 16 << 20}, img)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	exit, err := c.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if exit.Code != 137 || exit.Signal != unix.SIGKILL || !exit.OOM || exit.OOMKills < 1 {
		t.Errorf("exit of a hog with mem_limit 16m: %+v", exit)
	}
	if s := exit.String(); s != "exit 137 (SIGKILL, OOM killed)" {
		t.Errorf("exit string %q", s)
	}
	var total uint64
	for ev := range c.OOMEvents() {
		total = ev.Total
	}
	if total != exit.OOMKills {
		t.Errorf("OOM events total %d, exit %d", total, exit.OOMKills)
	}

	c = e.start(t, &manifest.Container{Name: "parent", Command: []string{"childhog"}, MemLimit: 16 << 20}, img)
	select {
	case ev := <-c.OOMEvents():
		if ev.Kills != 1 || ev.Total != 1 || c.Pid() == 0 {
			t.Errorf("event %+v, container pid %d", ev, c.Pid())
		}
	case <-ctx.Done():
		t.Fatal("no OOM event for the child")
	}
	waitLine(t, e.console, "parent", "child: signal: killed")
	if err := c.Stop(ctx, unix.SIGKILL, time.Second); err != nil {
		t.Fatal(err)
	}
	exit, _ = c.Wait(ctx)
	if exit.OOM || exit.OOMKills != 1 || exit.Signal != unix.SIGKILL {
		t.Errorf("exit of a container killed by us after a child's OOM kill: %+v", exit)
	}
	if s := exit.String(); !strings.Contains(s, "1 process OOM-killed") {
		t.Errorf("exit string %q", s)
	}
}

// The cgroup v2 watcher: memory.events is watched with inotify and each
// rise of oom_kill reported once (a fake file stands for the cgroup, so
// that this runs on a cgroup v1 machine too).
func TestOOMWatchV2(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "memory.events")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(events, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
	w, err := newOOMWatch(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	// libcontainer's reader of memory.events opens files under
	// /sys/fs/cgroup only: read the fake one plainly.
	w.count = func() (uint64, error) {
		b, err := os.ReadFile(events)
		if err != nil {
			return 0, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
				return strconv.ParseUint(v, 10, 64)
			}
		}
		return 0, errors.New("no oom_kill")
	}
	seen := make(chan uint64, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(0, func(n uint64) { seen <- n })
	}()
	expect := func(want uint64) {
		t.Helper()
		select {
		case n := <-seen:
			if n != want {
				t.Errorf("seen %d, want %d", n, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("count %d not seen", want)
		}
	}
	write("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
	expect(1)
	write("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n") // no new kill
	write("low 0\nhigh 0\nmax 9\noom 3\noom_kill 3\n")
	expect(3)
	select {
	case n := <-seen:
		t.Errorf("unexpected count %d", n)
	default:
	}
	w.file.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher did not stop at Close")
	}
	if _, err := newOOMWatch(t.TempDir(), true); err == nil {
		t.Error("watching a directory without memory.events succeeded")
	}
}
