package engine

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	// The test binary is also libcontainer's "init" re-exec.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
	"github.com/photon-init/photon-init/internal/syncbuf"
	"github.com/photon-init/photon-init/pkg/boot/console"
	"github.com/photon-init/photon-init/pkg/boot/reaper"
	"github.com/photon-init/photon-init/pkg/containers/supervisor"
	"github.com/photon-init/photon-init/pkg/mounts"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

// envProbe passes the probe binary's path to the namespace child.
const envProbe = "PHOTON_ENGINE_TEST_PROBE"

// buildProbe builds the container package's test probe (a static Go
// program that, among other things, speaks sd_notify with go-systemd's
// daemon.SdNotify) into dir.
func buildProbe(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(envProbe); p != "" {
		return p
	}
	out := filepath.Join(t.TempDir(), "probe")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "../container/testdata/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v\n%s", err, b)
	}
	return out
}

// TestReadinessGatesDependents runs the real engine (manifests, store,
// libcontainer runtime, supervisor) in a mount namespace of its own:
// "ready" tells its readiness with go-systemd's daemon.SdNotify over
// $NOTIFY_SOCKET and "after-ready" (depends_on service_ready) starts only
// then; "silent" never says READY=1, so "after-silent" keeps waiting.
func TestReadinessGatesDependents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for containers")
	}
	if !nstest.InChild(t.Name()) {
		t.Setenv(envProbe, buildProbe(t))
	}
	if !nstest.Run(t, unix.CLONE_NEWNS|unix.CLONE_NEWPID) {
		return
	}
	nstest.Private(t)
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	// Whatever the runtime mounted under root goes before TempDir's
	// cleanup removes it (cleanups run last-registered first).
	t.Cleanup(func() { mounts.UnmountAll(context.Background(), slog.New(slog.DiscardHandler), root, time.Second) })
	rootfs := filepath.Join(root, "images", "probe")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("cp", os.Getenv(envProbe), filepath.Join(rootfs, "probe")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, b)
	}
	paths := PathsUnder(root)
	if err := os.MkdirAll(paths.Manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	common := "image: rootfs:" + rootfs + "\nnetwork_mode: none\nstop_grace_period: 1s\n"
	for name, body := range map[string]string{
		"ready":        common + "command: [/probe, notify, \"STATUS=warming up\", READY=1]\n",
		"after-ready":  common + "command: [/probe, sleep]\ndepends_on:\n  ready:\n    condition: service_ready\n",
		"silent":       common + "command: [/probe, sleep]\n",
		"after-silent": common + "command: [/probe, sleep]\ndepends_on:\n  silent:\n    condition: service_ready\n",
	} {
		if err := os.WriteFile(filepath.Join(paths.Manifests, name+".yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	console := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(console, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rp := reaper.New(reaper.Options{Log: log})
	go rp.Run(ctx)
	cgroup := fmt.Sprintf("photon-engine-test-%d", os.Getppid())
	defer nstest.RemoveCgroups(cgroup)
	e := New(paths)
	if err := e.Start(ctx, Env{Log: log, Console: console, Reaper: rp, CgroupParent: cgroup}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
		defer stop()
		if err := e.Stop(stopCtx); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()

	status := func(name string) supervisor.Status {
		for _, st := range e.Status() {
			if st.Name == name {
				return st
			}
		}
		return supervisor.Status{}
	}
	deadline := time.Now().Add(20 * time.Second)
	for status("after-ready").State != supervisor.StateRunning {
		if time.Now().After(deadline) {
			t.Fatalf("after-ready never ran: %+v\n%s", e.Status(), console.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := status("ready"); !st.Ready || st.NotifyStatus != "warming up" {
		t.Errorf("ready: Ready %v, NotifyStatus %q; want true and %q", st.Ready, st.NotifyStatus, "warming up")
	}
	if st := status("silent"); st.State != supervisor.StateRunning || st.Ready {
		t.Errorf("silent: %+v; want running and not ready", st)
	}
	time.Sleep(time.Second)
	if st := status("after-silent"); st.State != supervisor.StateWaiting || !strings.Contains(st.Reason, "silent") {
		t.Errorf("after-silent: %s (%s); want waiting for silent", st.State, st.Reason)
	}
	// The ready container started its dependent only after READY=1.
	var readyAt, startAt time.Time
	for _, ev := range e.Events() {
		if ev.Container == "after-ready" && ev.To == supervisor.StateRunning && startAt.IsZero() {
			startAt = ev.Time
		}
		if ev.Container == "ready" && strings.Contains(ev.Reason, "READY=1") && readyAt.IsZero() {
			readyAt = ev.Time
		}
	}
	if readyAt.IsZero() {
		t.Fatalf("no event of ready's READY=1: %+v", e.Events())
	}
	if startAt.Before(readyAt) {
		t.Errorf("after-ready started at %v, before ready said READY=1 at %v", startAt, readyAt)
	}
}

// envFloodLines passes TestLogFlood's size to its namespace child.
const envFloodLines = "PHOTON_ENGINE_TEST_FLOOD_LINES"

// slowConsole is a console that takes a millisecond per write, like a
// serial line, behind pkg/boot/console's non-blocking queue.
type slowConsole struct {
	mu    sync.Mutex
	bytes int
}

func (c *slowConsole) Write(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	c.mu.Lock()
	c.bytes += len(p)
	c.mu.Unlock()
	return len(p), nil
}

// TestLogFlood runs a container that writes numbered lines as fast as it
// can (200 MB; 20 MB under -short) while the console is slow: the log file
// holds every line in order, the container's writing is far faster than
// the console, and the console says how many lines it did not show.
func TestLogFlood(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for containers")
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox (busybox-static) is not installed; scripts/deps.sh installs it")
	}
	if !nstest.InChild(t.Name()) {
		lines := "24000000" // "1".."24000000\n": 200 MB
		if testing.Short() {
			lines = "2700000" // 20 MB
		}
		t.Setenv(envFloodLines, lines) // the namespace child has no -short
	}
	if !nstest.Run(t, unix.CLONE_NEWNS|unix.CLONE_NEWPID) {
		return
	}
	nstest.Private(t)
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		t.Fatal(err)
	}
	lines, err := strconv.Atoi(os.Getenv(envFloodLines))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	t.Cleanup(func() { mounts.UnmountAll(context.Background(), slog.New(slog.DiscardHandler), root, time.Second) })
	rootfs := filepath.Join(root, "images", "bb")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("cp", busybox, filepath.Join(rootfs, "bin", "busybox")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, b)
	}
	paths := PathsUnder(root)
	if err := os.MkdirAll(paths.Manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	manifest := fmt.Sprintf("image: rootfs:%s\nnetwork_mode: none\nrestart: \"no\"\n"+
		"command: [/bin/busybox, seq, 1, \"%d\"]\nlogging:\n  max_size: 128m\n  max_files: 20\n", rootfs, lines)
	if err := os.WriteFile(filepath.Join(paths.Manifests, "flood.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow := &slowConsole{}
	con := console.New(slow)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rp := reaper.New(reaper.Options{Log: log})
	go rp.Run(ctx)
	cgroup := fmt.Sprintf("photon-engine-flood-%d", os.Getppid())
	defer nstest.RemoveCgroups(cgroup)
	e := New(paths)
	start := time.Now()
	if err := e.Start(ctx, Env{Log: log, Console: con, Reaper: rp, CgroupParent: cgroup}); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st := e.Status()
		if len(st) == 1 && st[0].State == supervisor.StateExited {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flood did not end: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)

	// Every line, in order, across the rotated files (flood.log.N, the
	// oldest, ... flood.log), in the runtime's CRI format "TIME stdout F
	// TEXT".
	rotated, _ := filepath.Glob(filepath.Join(paths.Logs, "flood.log.*"))
	files := make([]string, len(rotated))
	for _, p := range rotated {
		n, err := strconv.Atoi(strings.TrimPrefix(filepath.Ext(p), "."))
		if err != nil || n < 1 || n > len(rotated) {
			t.Fatalf("unexpected log file %s", p)
		}
		files[len(rotated)-n] = p
	}
	files = append(files, filepath.Join(paths.Logs, "flood.log"))
	want, size := 1, 0
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			rec := sc.Text()
			fields := strings.SplitN(rec, " ", 4)
			if len(fields) != 4 {
				t.Fatalf("%s: bad record %q", p, rec)
			}
			if fields[3] != strconv.Itoa(want) {
				t.Fatalf("%s: line %d is %q, want %d", p, want, fields[3], want)
			}
			size += len(fields[3]) + 1
			want++
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if want-1 != lines {
		t.Fatalf("the file has %d lines, want %d", want-1, lines)
	}
	con.Flush(5 * time.Second)
	slow.mu.Lock()
	consoleBytes := slow.bytes
	slow.mu.Unlock()
	writer := float64(size) / took.Seconds() / 1e6
	consoleRate := float64(consoleBytes) / took.Seconds() / 1e6
	t.Logf("%d lines (%.1f MB) in %d files, %v: container %.1f MB/s, console %.3f MB/s (%d bytes)", lines, float64(size)/1e6, len(files), took.Round(time.Millisecond), writer, consoleRate, consoleBytes)
	if writer < 20*consoleRate {
		t.Errorf("the container wrote at %.1f MB/s, not far above the console's %.3f MB/s", writer, consoleRate)
	}
	if consoleBytes >= size/10 {
		t.Errorf("the console got %d bytes of a %d-byte flood: not rate-limited", consoleBytes, size)
	}
}
