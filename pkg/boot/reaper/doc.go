// Package reaper is the one owner of reaping in photon-init's PID 1.
//
// PID 1 inherits every orphan of the machine and must reap every zombie.
// Code in the same process also waits for its own children: libcontainer's
// Process.Wait, os/exec's Cmd.Wait (a waitid on a pidfd since Go 1.23), the
// Go runtime's own probe of CLONE_PIDFD. A naive wait4(-1) loop takes the
// exit status of whichever child ends first, and those waits fail with
// ECHILD ("no child processes"): measured, libcontainer lost its container's
// status in 4 of 15 starts. So exactly one Reaper reaps, and it knows who
// owns which child.
//
// # The lock
//
// A Reaper has one lock that creating children and reaping share. A reaping
// pass holds it, so nothing can be forked while the reaper decides what to
// wait for, and every registered way of creating a child holds it from the
// fork until the new pid is registered. A child that exits before its pid is
// registered therefore stays a zombie until the registration is done: its
// exit status cannot be taken by the wrong party. Reaping is done in batches
// and the lock is released between them, so a stream of orphans does not
// starve the code that starts processes.
//
// # Two ways of owning a child
//
//  1. Reaper-waited: Spawn runs a start function with the lock held and
//     registers the pid it returns; Start does the same for an *exec.Cmd.
//     The reaper delivers the exit status to the returned Handle when it
//     reaps the child. For a Cmd, Handle.Wait also waits for the Cmd's
//     stdio-copying goroutines and closes its pipes, as Cmd.Wait would;
//     Cmd.Wait itself must then never be called.
//  2. Self-waited: Exclusive runs a function with the lock held and
//     registers the pids it returns as owned by someone else. The function
//     may fork and wait for helpers of its own (libcontainer forks and reaps
//     the intermediate stages of nsexec inside Start): nothing is reaped while
//     it runs. The reaper never waits for a registered pid; its owner waits
//     for it (Cmd.Wait, Process.Wait) and then calls Release.
//
// # A reaping pass
//
// A pass (on SIGCHLD, on Release, and on a slow periodic sweep that is only
// a safety net) peeks at one zombie with waitid(P_ALL,
// WEXITED|WNOHANG|WNOWAIT), which leaves it in place. If that zombie is not
// self-waited it is reaped with wait4(pid, WNOHANG) and its status goes to
// its Handle, or, for an orphan nobody registered, to the debug log and the
// Stats. If the first zombie is self-waited, the reaper cannot look past it
// with waitid, so it lists its children instead (/proc/self/task/*/children:
// children belong to the thread that forked them, and orphans re-parented to
// PID 1 are listed there too; /proc/*/stat is the fallback on kernels
// without CONFIG_PROC_CHILDREN) and wait4s each one that is not self-waited.
// The pass repeats until nothing is left to reap. Without /proc the slow
// path is impossible and zombies queued behind a self-waited one wait until
// its owner has waited for it, which owners do at once.
//
// The reaper never passes __WALL: children created without SIGCHLD as their
// exit signal (the Go runtime's vfork probe of CLONE_PIDFD, which would
// otherwise permanently turn off Go's pidfd process handling) are always
// waited for by their creator, and the kernel makes every re-parented orphan
// a SIGCHLD child.
//
// # Rules for the rest of the process
//
// Every child of the process must be created through Spawn, Start or
// Exclusive; a child created otherwise is an orphan to the reaper, and
// whoever waits for it may find it gone. The functions given to Spawn and
// Exclusive must not call Spawn, Start, Exclusive or Handle.Signal (the lock
// is not reentrant); Release may be called anywhere. An owner that never
// calls Release keeps that pid out of reach of the reaper for good.
//
// Outside PID 1 (photon-init run under systemd, tests) orphans go to the
// nearest subreaper or to the real init; BecomeSubreaper, or
// Options.Subreaper, makes this process collect its descendants instead.
package reaper
