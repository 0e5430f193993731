package power

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/boot/console"
	"github.com/photon-init/photon-init/pkg/mounts"
)

// Step is one step of the shutdown. Steps never stop the shutdown: an error
// is shown and the next step runs.
type Step struct {
	Name string
	Run  func(ctx context.Context) error
	// Timeout bounds the step; zero means one minute.
	Timeout time.Duration
}

// Shutdown is the shutdown sequence of PID 1.
type Shutdown struct {
	Log *slog.Logger
	// Before are steps run first, in order (stopping containers in reverse
	// dependency order hooks in here).
	Before []Step
	// SignalProcesses enables the steps that signal every process
	// (kill(-1)): only right for PID 1 of its own PID namespace.
	SignalProcesses bool
	// Unmount enables unmounting every filesystem.
	Unmount bool
	// Grace is how long processes get between SIGTERM and SIGKILL.
	Grace time.Duration
	// SyncTimeout bounds sync(2).
	SyncTimeout time.Duration
	// UnmountTimeout bounds each unmount.
	UnmountTimeout time.Duration
	// Flush is called just before reboot(2) to get the last lines out (the
	// console); nil for none.
	Flush func()
	// Reboot performs the final reboot(2) command; nil means unix.Reboot.
	// Tests and "boot --force" outside a real machine replace it.
	Reboot func(cmd int) error
}

// Steps returns the whole sequence, Before steps first.
func (s *Shutdown) Steps() []Step {
	steps := append([]Step(nil), s.Before...)
	if s.SignalProcesses {
		steps = append(steps, Step{Name: "stop-processes", Timeout: s.Grace + time.Second, Run: func(ctx context.Context) error {
			return signalAllAndWait(ctx, s.Log, unix.SIGTERM, s.Grace)
		}},
			Step{Name: "kill-remaining", Timeout: 3 * time.Second, Run: func(ctx context.Context) error {
				return signalAllAndWait(ctx, s.Log, unix.SIGKILL, 2*time.Second)
			}})
	}
	steps = append(steps, Step{Name: "sync", Timeout: s.SyncTimeout, Run: func(ctx context.Context) error {
		unix.Sync()
		return nil
	}})
	if s.Unmount {
		steps = append(steps, Step{Name: "unmount", Timeout: 30 * time.Second, Run: func(ctx context.Context) error {
			if failed := mounts.UnmountAll(ctx, s.Log, "/", s.UnmountTimeout); len(failed) > 0 {
				return fmt.Errorf("left mounted: %s", strings.Join(failed, " "))
			}
			return nil
		}})
	}
	return steps
}

// Run carries out the shutdown for req and ends with reboot(2). It returns
// only if reboot(2) failed (or Reboot was replaced and returned).
func (s *Shutdown) Run(req Request) error {
	s.notice(fmt.Sprintf("shutdown: %s requested (%s)", req.Action, req.Reason))
	for _, st := range s.Steps() {
		s.runStep(st)
	}
	cmd, name := req.Action.RebootCmd()
	s.notice("shutdown: reboot(" + name + ")")
	if s.Flush != nil {
		s.Flush()
	}
	reboot := s.Reboot
	if reboot == nil {
		reboot = unix.Reboot
	}
	if err := reboot(cmd); err != nil {
		s.Log.Error("shutdown: reboot("+name+")", "err", err)
		return fmt.Errorf("reboot(%s): %w", name, err)
	}
	return nil
}

// notice logs a shutdown line that shows at every level but quiet.
func (s *Shutdown) notice(msg string) {
	s.Log.Log(context.Background(), console.LevelNotice, msg)
}

// runStep runs one step within its time bound. A step that overruns is left
// running in the background; the shutdown goes on.
func (s *Shutdown) runStep(st Step) {
	timeout := st.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s.notice("shutdown: " + st.Name)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- safe.Call(st.Name, func() error { return st.Run(ctx) }) }()
	select {
	case err := <-done:
		if err != nil {
			s.Log.Error("shutdown: "+st.Name, "err", err)
		} else {
			s.Log.Debug("shutdown: "+st.Name+" done", "took", time.Since(start))
		}
	case <-ctx.Done():
		s.Log.Error("shutdown: "+st.Name+": gave up", "after", timeout)
	}
}

// signalAllAndWait sends sig to every process but PID 1 (kill(-1, sig)) and
// waits up to wait for all of them to be gone (the reaper collects them).
func signalAllAndWait(ctx context.Context, log *slog.Logger, sig unix.Signal, wait time.Duration) error {
	if err := unix.Kill(-1, sig); err != nil && err != unix.ESRCH {
		return fmt.Errorf("kill(-1, %s): %w", SignalName(sig), err)
	}
	deadline := time.Now().Add(wait)
	for {
		left := UserProcesses("/proc")
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d processes still running after %s: %s", len(left), SignalName(sig), strings.Join(left, ", "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pfKthread is PF_KTHREAD, the per-task flag of kernel threads.
const pfKthread = 0x00200000

// UserProcesses lists the processes other than the caller that are not
// kernel threads and not zombies, as "pid (comm)", from procDir.
func UserProcesses(procDir string) []string {
	self := os.Getpid()
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		data, err := os.ReadFile(procDir + "/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		comm, state, flags, ok := parseStat(string(data))
		if !ok || state == "Z" || state == "X" || flags&pfKthread != 0 {
			continue
		}
		out = append(out, fmt.Sprintf("%d (%s)", pid, comm))
	}
	return out
}

// parseStat extracts comm, state and flags from /proc/PID/stat, whose comm
// field may itself hold spaces and parentheses.
func parseStat(s string) (comm, state string, flags uint64, ok bool) {
	open := strings.IndexByte(s, '(')
	closing := strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", "", 0, false
	}
	comm = s[open+1 : closing]
	f := strings.Fields(s[closing+1:])
	// f[0] state, f[1] ppid, f[2] pgrp, f[3] session, f[4] tty_nr,
	// f[5] tpgid, f[6] flags
	if len(f) < 7 {
		return "", "", 0, false
	}
	flags, err := strconv.ParseUint(f[6], 10, 64)
	if err != nil {
		return "", "", 0, false
	}
	return comm, f[0], flags, true
}
