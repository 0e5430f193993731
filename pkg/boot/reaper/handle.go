package reaper

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exit is how a reaped process ended.
type Exit struct {
	// Pid is the process's pid (which may already belong to another).
	Pid int
	// Status is the wait status as wait4 returned it.
	Status unix.WaitStatus
	// Rusage is the resource usage of the process and its waited-for
	// descendants.
	Rusage unix.Rusage
}

// ExitCode returns the code the process exited with, or -1 when a signal
// killed it (as os.ProcessState.ExitCode does).
func (e Exit) ExitCode() int {
	if e.Status.Exited() {
		return e.Status.ExitStatus()
	}
	return -1
}

// Success reports whether the process exited with code 0.
func (e Exit) Success() bool { return e.Status.Exited() && e.Status.ExitStatus() == 0 }

// String describes the end as a shell would: "exit status 3",
// "signal: killed", "signal: aborted (core dumped)".
func (e Exit) String() string {
	switch {
	case e.Status.Exited():
		return fmt.Sprintf("exit status %d", e.Status.ExitStatus())
	case e.Status.Signaled():
		s := "signal: " + e.Status.Signal().String()
		if e.Status.CoreDump() {
			s += " (core dumped)"
		}
		return s
	default:
		return fmt.Sprintf("wait status %#x", uint32(e.Status))
	}
}

// Handle is a reaper-waited child, created by Spawn or Start. The reaper
// delivers its exit status when it reaps it.
type Handle struct {
	r   *Reaper
	pid int
	// reaped is closed by the reaper, lock held, once exit is set.
	reaped chan struct{}
	exit   Exit
	// done is closed when Wait may return: reaped, plus, for a Cmd, its
	// stdio copied and its pipes closed. It is reaped itself for Spawn.
	done chan struct{}
}

// Pid returns the child's pid. Once the child is reaped the pid may belong
// to another process: signal the child with Signal, not with kill(2).
func (h *Handle) Pid() int { return h.pid }

// Done returns a channel that is closed when Wait would return at once.
func (h *Handle) Done() <-chan struct{} { return h.done }

// Wait blocks until the child has been reaped (and, for Start, its output
// copied) and returns how it ended.
func (h *Handle) Wait() Exit {
	<-h.done
	return h.exit
}

// WaitContext is Wait that gives up when ctx ends, returning ctx's error
// (the child is still reaped later and Wait still works).
func (h *Handle) WaitContext(ctx context.Context) (Exit, error) {
	select {
	case <-h.done:
		return h.exit, nil
	case <-ctx.Done():
		return Exit{}, fmt.Errorf("reaper: wait for pid %d: %w", h.pid, ctx.Err())
	}
}

// Signal sends sig to the child unless it has already been reaped, in which
// case it returns os.ErrProcessDone. It holds the reaper's lock, so the pid
// cannot be reaped and reused between the check and the kill.
func (h *Handle) Signal(sig syscall.Signal) error {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	select {
	case <-h.reaped:
		return os.ErrProcessDone
	default:
	}
	if err := unix.Kill(h.pid, sig); err != nil {
		return fmt.Errorf("reaper: signal %v to pid %d: %w", sig, h.pid, err)
	}
	return nil
}
