package kmod

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUeventsLost is returned by UeventSource.Modaliases when the kernel
// dropped events (the socket's buffer overflowed): the caller must look at
// sysfs itself to catch up.
var ErrUeventsLost = errors.New("uevents lost (receive buffer overflowed)")

// UeventSource delivers the modaliases of devices the kernel adds. Coldplug
// subscribes before it walks sysfs, so a device that a freshly loaded driver
// creates (virtio_pci creates the virtio devices, button an input device)
// arrives as an event instead of costing another walk of /sys/devices.
type UeventSource interface {
	// Modaliases returns the MODALIAS of every "add" event received since
	// the previous call, without waiting. Loading a module reports its
	// devices' events before finit_module returns (drivers probe
	// synchronously unless told otherwise), so an empty answer right after
	// a load means the load added no device with a modalias.
	Modaliases() ([]string, error)
	// Wait returns when events are waiting to be read, or ctx's error
	// when it ends first.
	Wait(ctx context.Context) error
	// Close releases the subscription.
	Close() error
}

// ueventRcvbuf is the receive buffer asked for; a boot's burst of events is
// a few hundred KB at most. SO_RCVBUFFORCE may exceed rmem_max (PID 1 has
// CAP_NET_ADMIN); SO_RCVBUF is the fallback.
const ueventRcvbuf = 4 << 20

// OpenKernelUevents subscribes to the kernel's uevent broadcast
// (NETLINK_KOBJECT_UEVENT, group 1), the stream udev reads.
func OpenKernelUevents() (UeventSource, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("uevent socket: %w", err)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, ueventRcvbuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, ueventRcvbuf)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("uevent socket: bind: %w", err)
	}
	// The file puts the socket in Go's poller, for Wait; reads go
	// straight to the descriptor.
	return &kernelUevents{fd: fd, file: os.NewFile(uintptr(fd), "uevents"), buf: make([]byte, 64*1024)}, nil
}

type kernelUevents struct {
	fd   int
	file *os.File
	buf  []byte
}

// Wait parks in Go's poller until the socket is readable.
func (k *kernelUevents) Wait(ctx context.Context) error {
	rc, err := k.file.SyscallConn()
	if err != nil {
		return fmt.Errorf("uevent socket: %w", err)
	}
	if err := k.file.SetReadDeadline(time.Time{}); err != nil { // an earlier Wait's
		return fmt.Errorf("uevent socket: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = k.file.SetReadDeadline(time.Now()) })
	defer stop()
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, perr := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK)
		return perr != unix.EAGAIN
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("uevent socket: wait: %w", err)
	}
	return nil
}

// Modaliases drains the socket.
func (k *kernelUevents) Modaliases() ([]string, error) {
	var out []string
	for {
		n, from, err := unix.Recvfrom(k.fd, k.buf, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return out, nil
		case err == unix.ENOBUFS:
			// The kernel dropped events; what is still queued is
			// read on the next call.
			return out, ErrUeventsLost
		case err != nil:
			return out, fmt.Errorf("uevent socket: receive: %w", err)
		}
		// Only the kernel (port 0) speaks for devices; anyone with
		// CAP_NET_ADMIN could send to the group.
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue
		}
		if m := addedModalias(k.buf[:n]); m != "" {
			out = append(out, m)
		}
	}
}

// Close closes the socket.
func (k *kernelUevents) Close() error { return k.file.Close() }

// addedModalias returns the MODALIAS of a kernel uevent message
// ("ACTION@DEVPATH\0KEY=VALUE\0..."), or "" unless it is an "add" event
// with one.
func addedModalias(msg []byte) string {
	fields := bytes.Split(msg, []byte{0})
	if len(fields) == 0 || !bytes.HasPrefix(fields[0], []byte("add@")) {
		return ""
	}
	for _, f := range fields[1:] {
		if v, ok := bytes.CutPrefix(f, []byte("MODALIAS=")); ok {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}
