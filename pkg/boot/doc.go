// Package boot is photon-init's PID-1 life: the boot sequence, the duties of
// PID 1 (signals, power requests, the emergency state) and the shutdown.
//
// The boot is a declarative plan (Plan): phases run in order, the steps of a
// phase run in parallel, and every step is timed into the boot timeline. A
// step's failure is shown on the console and the boot goes on; a fatal
// step's failure puts the machine in an emergency state in which PID 1 still
// reaps, still obeys power requests, and never exits.
//
// Outside a real machine, "photon-init boot --force" runs the same sequence
// in sandbox mode, for tests inside their own mount and UTS namespaces: the
// steps that would change the host kernel (modules, sysctl, Ctrl-Alt-Del,
// killing every process, reboot(2)) are skipped.
package boot
