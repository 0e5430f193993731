package notify

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
)

// Defaults of Options.
const (
	// DefaultMode lets every user send: a container's process may run as
	// any uid, and connecting to a unix socket needs write permission on
	// it.
	DefaultMode = 0o666
	// DefaultQueueLen bounds the messages waiting for a slow consumer.
	DefaultQueueLen = 64
	// DefaultBuffer is the capacity of the Messages channel: one, since
	// a message that does not fit waits in the queue (merged with others
	// as the package documentation describes); every slot is a Message
	// (about 200 bytes) that each container's listener holds.
	DefaultBuffer = 1
	// DefaultCloseLinger is how long Close's delivery of pending messages
	// waits for the consumer to take each one.
	DefaultCloseLinger = 5 * time.Second
)

// maxSockPath is the longest path bind(2) takes in a sockaddr_un (108
// bytes with the terminating NUL).
const maxSockPath = len(unix.RawSockaddrUnix{}.Path) - 1

// oobSize holds the sender's credentials and the largest number of file
// descriptors one message can pass (SCM_MAX_FD, 253); descriptors that do
// not fit are discarded by the kernel, never leaked.
var oobSize = unix.CmsgSpace(unix.SizeofUcred) + unix.CmsgSpace(253*4)

// Options configure a Listener. The zero value is usable.
type Options struct {
	// Log receives dropped and malformed datagrams (debug) and read
	// errors (warn); nil discards.
	Log *slog.Logger
	// Mode is the socket file's mode; 0 means DefaultMode.
	Mode os.FileMode
	// QueueLen bounds the pending messages; 0 means DefaultQueueLen.
	QueueLen int
	// Buffer is the capacity of the Messages channel; 0 means
	// DefaultBuffer.
	Buffer int
	// CloseLinger bounds the wait for the consumer after Close, per
	// message; 0 means DefaultCloseLinger.
	CloseLinger time.Duration
}

// Listener receives sd_notify datagrams on one unix socket.
type Listener struct {
	path   string
	conn   *net.UnixConn
	log    *slog.Logger
	out    chan Message
	maxQ   int
	linger time.Duration

	// bufs holds the reader's buffers between datagrams; the garbage
	// collector empties it while the container is quiet.
	bufs sync.Pool

	mu     sync.Mutex
	queue  []Message
	closed bool // the reader has stopped; no message is queued any more
	// forwarding: a delivery goroutine runs (started when a message
	// could not be handed over at once; it ends when the queue is
	// empty). While it runs, every message goes through the queue.
	forwarding bool

	stop       chan struct{} // closed by Close, after closed is set
	readerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error
}

// Listen creates a SOCK_DGRAM unix socket at path (replacing a stale
// socket left there, refusing any other kind of file) and starts receiving.
// A path longer than bind(2) takes is bound through /proc/self/fd. The
// caller reads Messages and calls Close.
func Listen(path string, opts Options) (*Listener, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Mode == 0 {
		opts.Mode = DefaultMode
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = DefaultQueueLen
	}
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	if opts.CloseLinger <= 0 {
		opts.CloseLinger = DefaultCloseLinger
	}
	if err := removeStale(path); err != nil {
		return nil, fmt.Errorf("notify socket %s: %w", path, err)
	}
	conn, err := bind(path)
	if err != nil {
		return nil, fmt.Errorf("notify socket %s: %w", path, err)
	}
	fail := func(err error) (*Listener, error) {
		conn.Close()
		os.Remove(path)
		return nil, fmt.Errorf("notify socket %s: %w", path, err)
	}
	if err := os.Chmod(path, opts.Mode); err != nil {
		return fail(err)
	}
	if err := passCred(conn); err != nil {
		return fail(fmt.Errorf("SO_PASSCRED: %w", err))
	}
	l := &Listener{
		path: path, conn: conn, log: opts.Log,
		out:    make(chan Message, opts.Buffer),
		maxQ:   opts.QueueLen,
		linger: opts.CloseLinger,
		stop:   make(chan struct{}), readerDone: make(chan struct{}),
	}
	safe.Go(l.log, "notify reader "+path, l.read)
	return l, nil
}

// removeStale removes a socket left at path by an earlier run.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("exists and is not a socket (%v)", fi.Mode().Type())
	}
	return os.Remove(path)
}

// bind creates the socket, through /proc/self/fd/N/NAME when the path is
// too long for a sockaddr_un.
func bind(path string) (*net.UnixConn, error) {
	name := path
	if len(path) > maxSockPath {
		dir, err := os.OpenFile(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		defer dir.Close()
		name = "/proc/self/fd/" + strconv.Itoa(int(dir.Fd())) + "/" + filepath.Base(path)
		if len(name) > maxSockPath {
			return nil, fmt.Errorf("socket name %q is too long", filepath.Base(path))
		}
	}
	return net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
}

// passCred sets SO_PASSCRED, so that every datagram carries its sender.
func passCred(conn *net.UnixConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil {
		return err
	}
	return serr
}

// Path is the socket's path.
func (l *Listener) Path() string { return l.path }

// Messages delivers the received messages in order (merged as the package
// documentation describes). It is closed after Close, once the pending
// messages are delivered or given up.
func (l *Listener) Messages() <-chan Message { return l.out }

// Close stops receiving and removes the socket file. Messages already
// received are still delivered. It is safe to call more than once.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.closeErr = l.conn.Close()
		<-l.readerDone
		l.mu.Lock()
		l.closed = true
		if !l.forwarding {
			close(l.out) // nothing pending, and nobody sends any more
		}
		l.mu.Unlock()
		close(l.stop)
		if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) && l.closeErr == nil {
			l.closeErr = err
		}
		if l.closeErr != nil {
			l.closeErr = fmt.Errorf("close notify socket %s: %w", l.path, l.closeErr)
		}
	})
	return l.closeErr
}

// readBufs are the reader's buffers: a datagram and its control data.
type readBufs struct {
	data [MaxMessage + 1]byte
	oob  []byte
}

// getBufs returns buffers from the pool.
func (l *Listener) getBufs() *readBufs {
	if b, ok := l.bufs.Get().(*readBufs); ok {
		return b
	}
	return &readBufs{oob: make([]byte, oobSize)}
}

// read receives datagrams until the socket is closed. It waits for one
// without holding a buffer: buffers are taken from the pool once a
// datagram is there, so a quiet container's socket costs none.
func (l *Listener) read() {
	defer close(l.readerDone)
	rc, err := l.conn.SyscallConn()
	if err != nil {
		l.log.Warn("notify: receive", "socket", l.path, "err", err)
		return
	}
	for {
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			b := l.getBufs()
			defer l.bufs.Put(b)
			var n, oobn, flags int
			for {
				n, oobn, flags, _, rerr = unix.Recvmsg(int(fd), b.data[:], b.oob, unix.MSG_CMSG_CLOEXEC)
				if rerr != unix.EINTR {
					break
				}
			}
			if rerr == unix.EAGAIN {
				return false // nothing yet: wait for the poller, holding no buffer
			}
			if rerr == nil {
				l.received(b.data[:n], b.oob[:oobn], flags)
			}
			return true
		})
		switch {
		case err != nil:
			if !errors.Is(err, net.ErrClosed) {
				l.log.Warn("notify: receive", "socket", l.path, "err", err)
			}
			return
		case rerr != nil:
			l.log.Warn("notify: receive", "socket", l.path, "err", rerr)
			time.Sleep(10 * time.Millisecond) // no busy loop on a persistent error
		}
	}
}

// received handles one datagram: data and its control data.
func (l *Listener) received(data, oob []byte, flags int) {
	sender := l.control(oob)
	if flags&unix.MSG_TRUNC != 0 || len(data) > MaxMessage {
		l.log.Debug("notify: datagram longer than 4096 bytes dropped", "socket", l.path)
		return
	}
	m := Parse(data)
	if m.empty() {
		l.log.Debug("notify: datagram without assignments dropped", "socket", l.path, "data", string(data[:min(len(data), 80)]))
		return
	}
	m.Time, m.Sender = time.Now(), sender
	l.push(m)
}

// control reads the credentials of a datagram and closes the file
// descriptors it passed.
func (l *Listener) control(oob []byte) *Credentials {
	if len(oob) == 0 {
		return nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		l.log.Debug("notify: control message", "socket", l.path, "err", err)
		return nil
	}
	var cred *Credentials
	for i := range msgs {
		if fds, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			continue
		}
		if uc, err := unix.ParseUnixCredentials(&msgs[i]); err == nil {
			cred = &Credentials{PID: int(uc.Pid), UID: int(uc.Uid), GID: int(uc.Gid)}
		}
	}
	return cred
}

// empty reports whether a parsed message set nothing.
func (m *Message) empty() bool {
	return !m.Changes() && !m.StatusSet && !m.Watchdog && m.Errno == 0 && m.MainPID == 0 &&
		m.WatchdogTimeout == 0 && m.ExtendTimeout == 0 && len(m.Other) == 0
}

// push hands a message to the consumer, or queues it, without ever
// blocking on the consumer. A delivery goroutine is started only when a
// message has to wait: a container whose consumer keeps up costs none.
func (l *Listener) push(m Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.forwarding && len(l.queue) == 0 {
		select {
		case l.out <- m:
			return
		default:
		}
	}
	n := len(l.queue)
	switch {
	case n > 0 && !l.queue[n-1].Changes() && !m.Changes():
		l.queue[n-1].merge(&m)
	case n >= l.maxQ:
		l.queue[n-1].merge(&m)
	default:
		l.queue = append(l.queue, m)
	}
	if !l.forwarding {
		l.forwarding = true
		safe.Go(l.log, "notify delivery "+l.path, l.forward)
	}
}

// next takes the oldest pending message; false when none is pending,
// and then the delivery goroutine ends (closing Messages after Close).
func (l *Listener) next() (Message, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) > 0 {
		m := l.queue[0]
		l.queue[0] = Message{}
		l.queue = l.queue[1:]
		if len(l.queue) == 0 {
			l.queue = nil // let go of the backing array
		}
		return m, true
	}
	l.endForwardLocked()
	return Message{}, false
}

// endForwardLocked ends the delivery goroutine's turn; after Close it
// closes Messages, which Close left to it. l.mu is held.
func (l *Listener) endForwardLocked() {
	l.forwarding = false
	if l.closed {
		close(l.out)
	}
}

// forward hands the queued messages to the consumer until the queue is
// empty; after Close it waits at most linger for each, then gives up the
// rest.
func (l *Listener) forward() {
	for {
		m, ok := l.next()
		if !ok {
			return
		}
		select {
		case l.out <- m:
			continue
		case <-l.stop:
		}
		t := time.NewTimer(l.linger)
		select {
		case l.out <- m:
			t.Stop()
		case <-t.C:
			l.mu.Lock()
			dropped := 1 + len(l.queue)
			l.queue = nil
			l.endForwardLocked()
			l.mu.Unlock()
			l.log.Debug("notify: nobody takes the messages after close; dropped", "socket", l.path, "count", dropped)
			return
		}
	}
}
