// Package notify receives the sd_notify protocol: the datagrams a service
// sends to the unix socket named by $NOTIFY_SOCKET to say that it is ready,
// reloading or stopping, to publish a status line, or to ping its watchdog.
// It is the receiving side of what systemd's service manager implements and
// what go-systemd's daemon.SdNotify, libsystemd's sd_notify(3) and
// systemd-notify(1) send.
//
// # The protocol
//
// One datagram (SOCK_DGRAM, at most 4096 bytes, as systemd accepts) is one
// message: newline-separated KEY=VALUE assignments. Parse understands
//
//	READY=1              start-up (or a reload) is complete
//	RELOADING=1          reloading its configuration; READY=1 follows
//	STOPPING=1           shutting down
//	STATUS=text          a free-form status line (empty: cleared)
//	ERRNO=n              the errno of a failure
//	MAINPID=n            the main process (in the sender's PID namespace)
//	WATCHDOG=1           a watchdog ping
//	WATCHDOG=trigger     "consider my watchdog expired now"
//	WATCHDOG_USEC=n      a new watchdog timeout
//	EXTEND_TIMEOUT_USEC=n  extend the current start, stop or reload timeout
//
// and keeps every other assignment (BUSERROR, FDSTORE, BARRIER, ...) in
// Message.Other. A value that does not parse (READY=yes, MAINPID=abc)
// leaves its field unset; lines without "=" are ignored; a truncated
// datagram is dropped as systemd drops it.
//
// File descriptors passed along (FDSTORE=1, the pipe of BARRIER=1) are
// closed at once: nothing is stored, and closing the barrier pipe is
// exactly the answer sd_notify_barrier(3) waits for.
//
// # Credentials
//
// The socket has SO_PASSCRED set, so every datagram carries the sender's
// pid, uid and gid, translated into the listener's namespaces by the
// kernel; they are in Message.Sender. The listener accepts every sender
// (systemd's NotifyAccess=all): who can reach the socket is decided by
// where it is reachable. photon-init's container runtime puts each
// container's socket in a directory of its own that only that container
// gets bind-mounted, so only the container's processes (and root on the
// host) can send to it. Checking that the sender is in the container's
// cgroup was left out on purpose: the common sender, systemd-notify or a
// shell script's helper, often exits before its datagram is read, and the
// check would then drop a genuine READY=1.
//
// # Delivery
//
// Listen starts a reader that never blocks on the consumer: a message goes
// straight into the Messages channel when it has room, else into a queue
// that a delivery goroutine, started then and ending once the queue is
// empty, hands to the channel. The reader waits for datagrams without
// holding a buffer. So a listener whose consumer keeps up costs one
// goroutine and no buffer while its container is quiet.
// While the consumer is slow, a message that changes no state (only
// STATUS, WATCHDOG=1, WATCHDOG_USEC, MAINPID, ERRNO, EXTEND_TIMEOUT_USEC
// and other keys) is merged into a pending message of the same kind, the
// later values winning, so a flood of status lines costs one message.
// Messages with READY, RELOADING, STOPPING or WATCHDOG=trigger keep their
// order and are never dropped; should the queue still reach its bound
// (QueueLen, only under a flood of those), the newest message is merged
// into the last pending one, so the flags survive while the memory stays
// bounded.
//
// Close stops the reader; the pending messages are still delivered, each
// waiting at most CloseLinger for the consumer, and the channel is closed
// after the last one.
package notify
