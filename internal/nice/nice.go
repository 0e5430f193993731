// Package nice runs work at a lower CPU priority on Linux, where the nice
// value belongs to a thread: background work in PID 1 (coldplug, a
// container's config.json) yields to what is on the boot path.
package nice

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// Run runs fn on an OS thread of its own at the given nice value, then
// restores the thread's own. If the value cannot be set,
// fn runs at the normal priority; if the priority cannot be restored, the
// thread stays locked and ends with the goroutine, so no other goroutine
// runs on it at the lower priority.
func Run(nice int, fn func() error) error {
	runtime.LockOSThread()
	tid := unix.Gettid()
	// The raw system call answers 20 - nice.
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil || unix.Setpriority(unix.PRIO_PROCESS, tid, nice) != nil {
		runtime.UnlockOSThread()
		return fn()
	}
	err = fn()
	if unix.Setpriority(unix.PRIO_PROCESS, tid, 20-prio) == nil {
		runtime.UnlockOSThread()
	}
	return err
}
