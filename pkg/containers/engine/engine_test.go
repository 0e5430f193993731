package engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	// The test binary is also libcontainer's "init" re-exec.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
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

// syncBuffer is a console for the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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
	console := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(console, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rp := reaper.New(reaper.Options{Log: log})
	go rp.Run(ctx)
	cgroup := fmt.Sprintf("photon-engine-test-%d", os.Getppid())
	defer removeCgroups(cgroup)
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

// removeCgroups removes the test's cgroup parent from every hierarchy.
func removeCgroups(parent string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", parent))
	for _, d := range dirs {
		subs, _ := filepath.Glob(filepath.Join(d, "*"))
		for _, s := range subs {
			if st, err := os.Stat(s); err == nil && st.IsDir() {
				_ = os.Remove(s)
			}
		}
		_ = os.Remove(d)
	}
}
