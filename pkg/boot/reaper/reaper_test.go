package reaper

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
	"github.com/photon-init/photon-init/internal/syncbuf"
)

// logWriter sends a logger's lines to the test log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// runReaper runs r.Run until the test ends.
func runReaper(t testing.TB, r *Reaper) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// procState returns the state letter of pid from /proc, or 0 if it is gone.
func procState(pid int) byte {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	_, st, ok := parseStat(data)
	if !ok {
		return 0
	}
	return st
}

// waitState waits until pid is in state (0: gone).
func waitState(t testing.TB, pid int, state byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for procState(pid) != state {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: state %q, want %q", pid, procState(pid), state)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func waitHandle(t testing.TB, h *Handle) Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := h.WaitContext(ctx)
	if err != nil {
		t.Fatalf("pid %d: %v (stats %+v)", h.Pid(), err, h.r.Stats())
	}
	return e
}

func sh(script string) *exec.Cmd { return exec.Command("/bin/sh", "-c", script) }

func TestStartDeliversStatus(t *testing.T) {
	r := New(Options{Log: testLogger(t)})
	runReaper(t, r)
	for _, tc := range []struct {
		name   string
		script string
		code   int
		sig    syscall.Signal
		str    string
	}{
		{"exit 0", "exit 0", 0, 0, "exit status 0"},
		{"exit 3", "exit 3", 3, 0, "exit status 3"},
		{"exit 255", "exit 255", 255, 0, "exit status 255"},
		{"killed", "kill -KILL $$", -1, syscall.SIGKILL, "signal: killed"},
		{"terminated", "kill -TERM $$", -1, syscall.SIGTERM, "signal: terminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := r.Start(sh(tc.script))
			if err != nil {
				t.Fatal(err)
			}
			e := waitHandle(t, h)
			if e.Pid != h.Pid() || e.ExitCode() != tc.code || e.String() != tc.str || e.Success() != (tc.code == 0) {
				t.Errorf("exit = %+v (%v), want code %d %q", e, e, tc.code, tc.str)
			}
			if tc.sig != 0 && (!e.Status.Signaled() || e.Status.Signal() != tc.sig) {
				t.Errorf("status %v, want signal %v", e, tc.sig)
			}
		})
	}
	if s := r.Stats(); s.Delivered != 5 || s.Pending != 0 || s.Orphans != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestSpawn(t *testing.T) {
	r := New(Options{Log: testLogger(t)})
	runReaper(t, r)
	h, err := r.Spawn(func() (int, error) {
		p, err := os.StartProcess("/bin/sh", []string{"sh", "-c", "exit 42"}, &os.ProcAttr{})
		if err != nil {
			return 0, err
		}
		pid := p.Pid
		_ = p.Release() // the reaper waits, not os.Process
		return pid, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if e := waitHandle(t, h); e.ExitCode() != 42 {
		t.Errorf("exit %v, want 42", e)
	}

	boom := errors.New("boom")
	for _, tc := range []struct {
		name  string
		start func() (int, error)
		want  string
	}{
		{"error", func() (int, error) { return 0, boom }, "reaper: spawn: boom"},
		{"no pid", func() (int, error) { return 0, nil }, "reaper: spawn: start returned pid 0"},
	} {
		if h, err := r.Spawn(tc.start); h != nil || err == nil || err.Error() != tc.want {
			t.Errorf("%s: Spawn = %v, %v; want %q", tc.name, h, err, tc.want)
		}
	}
	if _, err := r.Start(exec.Command("/nonexistent/program")); err == nil || !strings.Contains(err.Error(), "reaper: start /nonexistent/program") {
		t.Errorf("Start(nonexistent) = %v", err)
	}
	if s := r.Stats(); s.Pending != 0 {
		t.Errorf("stats %+v after failed starts", s)
	}
}

// TestExitBeforeRegistration: the child is a zombie, and its SIGCHLD has
// been delivered, before start returns; the status must still be delivered.
func TestExitBeforeRegistration(t *testing.T) {
	r := New(Options{Log: testLogger(t)})
	runReaper(t, r)
	for i := range 5 {
		h, err := r.Spawn(func() (int, error) {
			cmd := sh("exit " + strconv.Itoa(10+i))
			if err := cmd.Start(); err != nil {
				return 0, err
			}
			waitState(t, cmd.Process.Pid, 'Z')
			time.Sleep(20 * time.Millisecond) // let Run take the SIGCHLD and block on the lock
			return cmd.Process.Pid, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if e := waitHandle(t, h); e.ExitCode() != 10+i {
			t.Errorf("exit %v, want %d", e, 10+i)
		}
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	names, err := readDirNames("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(names)
}

func TestStartCopiesOutputAndClosesPipes(t *testing.T) {
	r := New(Options{Log: testLogger(t)})
	runReaper(t, r)
	before := countFDs(t)
	var stdout, stderr bytes.Buffer
	cmd := sh("read x; echo out $x; echo err >&2; exit 4")
	cmd.Stdin = strings.NewReader("in\n")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	h, err := r.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if e := waitHandle(t, h); e.ExitCode() != 4 {
		t.Errorf("exit %v, want 4", e)
	}
	if stdout.String() != "out in\n" || stderr.String() != "err\n" {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	if cmd.Process.Pid != -1 {
		t.Errorf("cmd.Process not released: pid %d", cmd.Process.Pid)
	}
	if after := countFDs(t); after != before {
		t.Errorf("%d open descriptors before, %d after: pipes not closed", before, after)
	}
}

// TestExclusive: a self-waited child is never reaped, and what the
// exclusive function forks and waits for itself is not stolen.
func TestExclusive(t *testing.T) {
	r := New(Options{Log: testLogger(t)})
	runReaper(t, r)
	for i := range 20 {
		var cmd *exec.Cmd
		err := r.Exclusive(func() ([]int, error) {
			// An intermediate helper, forked and waited inside, as
			// libcontainer does with nsexec's stages.
			var ee *exec.ExitError
			if err := sh("exit 5").Run(); !errors.As(err, &ee) || ee.ExitCode() != 5 {
				return nil, errors.New("helper: " + err.Error())
			}
			cmd = sh("exit " + strconv.Itoa(i))
			if err := cmd.Start(); err != nil {
				return nil, err
			}
			return []int{cmd.Process.Pid}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		waitState(t, pid, 'Z')
		if n := r.Reap(); n != 0 {
			t.Errorf("Reap reaped %d with only a self-waited zombie", n)
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		switch {
		case i == 0 && err != nil, i > 0 && (!errors.As(err, &ee) || ee.ExitCode() != i):
			t.Fatalf("cmd.Wait = %v, want exit %d", err, i)
		}
		r.Release(pid)
	}
	if s := r.Stats(); s.SelfWaited != 0 || s.Orphans != 0 || s.Delivered != 0 {
		t.Errorf("stats %+v", s)
	}
	wantErr := errors.New("fail")
	if err := r.Exclusive(func() ([]int, error) { return []int{0, -1}, wantErr }); !errors.Is(err, wantErr) {
		t.Errorf("Exclusive error = %v", err)
	}
}

// TestSlowPath: a self-waited zombie comes first (forked first, from the same
// thread); the reaper must list the children and reap those behind it.
func TestSlowPath(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := New(Options{Log: testLogger(t)})
	var self *exec.Cmd
	if err := r.Exclusive(func() ([]int, error) {
		self = sh("exit 1")
		if err := self.Start(); err != nil {
			return nil, err
		}
		return []int{self.Process.Pid}, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitState(t, self.Process.Pid, 'Z')
	h, err := r.Start(sh("exit 2"))
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, h.Pid(), 'Z')
	orphan, err := os.StartProcess("/bin/sh", []string{"sh", "-c", "exit 3"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	orphanPid := orphan.Pid
	_ = orphan.Release()
	waitState(t, orphanPid, 'Z')

	if n := r.Reap(); n != 2 {
		t.Errorf("Reap = %d, want 2", n)
	}
	if e := waitHandle(t, h); e.ExitCode() != 2 {
		t.Errorf("handle: %v, want exit 2", e)
	}
	if st := procState(orphanPid); st != 0 {
		t.Errorf("unregistered child in state %q, want reaped", st)
	}
	if st := procState(self.Process.Pid); st != 'Z' {
		t.Errorf("self-waited child in state %q, want a zombie", st)
	}
	s := r.Stats()
	if s.SlowPasses == 0 || s.Orphans != 1 || s.Delivered != 1 || s.SelfWaited != 1 {
		t.Errorf("stats %+v", s)
	}
	pid := self.Process.Pid
	var ee *exec.ExitError
	if err := self.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("self-waited Wait = %v, want exit 1", err)
	}
	r.Release(pid)
}

// TestReleaseUnwaited: a released pid that nobody waited for is reaped as
// an orphan, promptly (Release kicks Run), not at the next sweep.
func TestReleaseUnwaited(t *testing.T) {
	r := New(Options{Log: testLogger(t), SweepInterval: -1})
	runReaper(t, r)
	var cmd *exec.Cmd
	if err := r.Exclusive(func() ([]int, error) {
		cmd = sh("exit 0")
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return []int{cmd.Process.Pid}, nil
	}); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	waitState(t, pid, 'Z')
	time.Sleep(50 * time.Millisecond)
	if st := procState(pid); st != 'Z' {
		t.Fatalf("self-waited zombie in state %q before Release", st)
	}
	r.Release(pid)
	r.Release(pid) // a second release of an unknown pid does nothing
	waitState(t, pid, 0)
	if s := r.Stats(); s.Orphans != 1 || s.SelfWaited != 0 {
		t.Errorf("stats %+v", s)
	}
	_ = cmd.Process.Release()
}

// TestSelfWaitedRegistrationCounts: two registrations of one pid (a stale
// one and a fresh one after pid reuse) need two releases.
func TestSelfWaitedRegistrationCounts(t *testing.T) {
	r := New(Options{})
	for range 2 {
		if err := r.Exclusive(func() ([]int, error) { return []int{12345}, nil }); err != nil {
			t.Fatal(err)
		}
	}
	for want := 2; want >= 0; want-- {
		if got := r.selfWaited[12345]; got != want || r.isSelfWaited(12345) != (want > 0) {
			t.Fatalf("registrations %d, want %d", got, want)
		}
		r.Release(12345)
	}
	// A Handle wins over a stale self-waited registration of its pid.
	r.selfWaited[777] = 1
	r.handles[777] = &Handle{}
	if r.isSelfWaited(777) {
		t.Errorf("a pid with a Handle counts as self-waited")
	}
}

func TestHandleSignal(t *testing.T) {
	r := New(Options{Log: testLogger(t)})
	runReaper(t, r)
	h, err := r.Start(exec.Command("/bin/sleep", "30"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e := waitHandle(t, h)
	if !e.Status.Signaled() || e.Status.Signal() != syscall.SIGTERM || e.ExitCode() != -1 {
		t.Errorf("exit %v, want SIGTERM", e)
	}
	if err := h.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after reaping = %v, want ErrProcessDone", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h2, err := r.Start(exec.Command("/bin/sleep", "30"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h2.WaitContext(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitContext(canceled) = %v", err)
	}
	_ = h2.Signal(syscall.SIGKILL)
	waitHandle(t, h2)
}

func TestRunOnceAndStops(t *testing.T) {
	r := New(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !r.running.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := r.Run(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run = %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

func TestRunRecoversFromPanic(t *testing.T) {
	var logs syncbuf.Buffer
	r := New(Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	var calls atomic.Int32
	r.beforeBatch = func() {
		if calls.Add(1) == 1 {
			panic("injected")
		}
	}
	runReaper(t, r)
	deadline := time.Now().Add(5 * time.Second)
	for r.Stats().Panics == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	h, err := r.Start(sh("exit 6"))
	if err != nil {
		t.Fatal(err)
	}
	if e := waitHandle(t, h); e.ExitCode() != 6 {
		t.Errorf("exit %v after a panic, want 6", e)
	}
	if s := r.Stats(); s.Panics != 1 {
		t.Errorf("stats %+v, want 1 panic", s)
	}
	if !strings.Contains(logs.String(), "panic in a reaping pass") || !strings.Contains(logs.String(), "injected") {
		t.Errorf("log %q lacks the panic", logs.String())
	}
}

// TestChildrenListing: both ways of listing children find children forked
// from different threads.
func TestChildrenListing(t *testing.T) {
	r := New(Options{Log: testLogger(t)})
	var handles []*Handle
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // a thread of its own; it exits with the goroutine
			h, err := r.Start(exec.Command("/bin/sleep", "30"))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			handles = append(handles, h)
			mu.Unlock()
		}()
	}
	wg.Wait()
	var want []int
	for _, h := range handles {
		want = append(want, h.Pid())
	}
	var buf []byte
	self := os.Getpid()
	fromTasks, err := childrenFromTasks(self, &buf)
	if err != nil {
		t.Fatal(err)
	}
	fromStat, err := childrenFromStat(self, &buf)
	if err != nil {
		t.Fatal(err)
	}
	viaChildren, err := children(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range want {
		if !slices.Contains(fromTasks, pid) || !slices.Contains(fromStat, pid) || !slices.Contains(viaChildren, pid) {
			t.Errorf("pid %d missing: tasks %v, stat %v, children %v", pid, fromTasks, fromStat, viaChildren)
		}
	}
	for _, h := range handles {
		if err := h.Signal(syscall.SIGKILL); err != nil {
			t.Error(err)
		}
	}
	for _, h := range handles {
		waitState(t, h.Pid(), 'Z')
	}
	if n := r.Reap(); n != len(handles) {
		t.Errorf("Reap = %d, want %d", n, len(handles))
	}
	for _, h := range handles {
		waitHandle(t, h)
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in    string
		ppid  int
		state byte
		ok    bool
	}{
		{"1 (init) S 0 1 1 0 -1", 0, 'S', true},
		{"42 (a) b) (c) Z 7 42 42", 7, 'Z', true},
		{"43 (sh) R 1", 1, 'R', true},
		{"garbage", 0, 0, false},
		{"44 (x) S notanumber", 0, 0, false},
		{"45 (x)", 0, 0, false},
	} {
		ppid, state, ok := parseStat([]byte(tc.in))
		if ppid != tc.ppid || state != tc.state || ok != tc.ok {
			t.Errorf("parseStat(%q) = %d, %q, %v", tc.in, ppid, state, ok)
		}
	}
}

func TestExitString(t *testing.T) {
	for _, tc := range []struct {
		status unix.WaitStatus
		want   string
	}{
		{0, "exit status 0"},
		{1 << 8, "exit status 1"},
		{9, "signal: killed"},
		{6 | 0x80, "signal: aborted (core dumped)"},
		{0xffff, "wait status 0xffff"},
	} {
		if got := (Exit{Status: tc.status}).String(); got != tc.want {
			t.Errorf("Exit{%#x}.String() = %q, want %q", uint32(tc.status), got, tc.want)
		}
	}
}

// TestSubreaper: outside PID 1, Options.Subreaper makes the orphans of our
// children ours to reap. Run in a child process, not to change the test's.
func TestSubreaper(t *testing.T) {
	if !nstest.Run(t, 0) {
		return
	}
	if os.Getpid() == 1 {
		t.Skip("PID 1 needs no subreaper")
	}
	r := New(Options{Log: testLogger(t), Subreaper: true})
	runReaper(t, r)
	h, err := r.Start(sh("sleep 0.2 & exit 0"))
	if err != nil {
		t.Fatal(err)
	}
	if e := waitHandle(t, h); !e.Success() {
		t.Errorf("exit %v", e)
	}
	var flag int32
	if _, _, errno := unix.Syscall(unix.SYS_PRCTL, unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&flag)), 0); errno != 0 || flag != 1 {
		t.Errorf("PR_GET_CHILD_SUBREAPER = %d, %v", flag, errno)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.Stats().Orphans == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s := r.Stats(); s.Orphans != 1 {
		t.Errorf("stats %+v, want the backgrounded sleep reaped as an orphan", s)
	}
}
