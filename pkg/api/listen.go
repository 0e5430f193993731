package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
)

// Listen creates the control socket at path, mode 0600, and returns its
// listener. The socket is bound in a fresh 0700 directory beside path and
// renamed into place, so it is never reachable with looser permissions (a
// umask change would affect the whole of PID 1). A stale socket at path is
// replaced; one that a server still answers on is an error, as is any
// other kind of file. The listener does not remove path when closed.
func Listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(dir, ".sock")
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(tmp, "s"), Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(filepath.Join(tmp, "s"), 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Rename(filepath.Join(tmp, "s"), path); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return l, nil
}

// removeStale removes a socket at path that nobody answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: a %v is in the way", path, fi.Mode().Type())
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another server is listening on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket: remove stale %s: %w", path, err)
	}
	return nil
}

// limitListener hands out at most max connections at once; beyond that a
// connection is answered 503 and closed, so that a flood of clients costs
// PID 1 a bounded number of goroutines and buffers.
type limitListener struct {
	net.Listener
	max int
	log *slog.Logger

	mu     sync.Mutex
	active int
	// rejecting counts the goroutines answering rejected connections.
	rejecting int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.active < l.max {
			l.active++
			l.mu.Unlock()
			return &limitedConn{Conn: c, release: l.release}, nil
		}
		busy := l.rejecting >= l.max
		if !busy {
			l.rejecting++
		}
		l.mu.Unlock()
		if busy {
			// Even the rejections are at their limit: drop.
			c.Close()
			continue
		}
		safe.Go(l.log, "control socket: reject", func() {
			defer func() {
				l.mu.Lock()
				l.rejecting--
				l.mu.Unlock()
			}()
			reject(c)
		})
	}
}

func (l *limitListener) release() {
	l.mu.Lock()
	l.active--
	l.mu.Unlock()
}

// reject reads the request's head (so that the client reads the answer
// rather than a broken pipe) and answers 503.
func reject(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	c.Read(buf)
	body := `{"message":"too many connections to the control socket; try again"}` + "\n"
	fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

// limitedConn gives its slot back when closed (once).
type limitedConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// peer is the process at the other end of a connection.
type peer struct {
	uid, pid int
	err      error
}

type peerKey struct{}

// peerContext records the connection's peer credentials (SO_PEERCRED).
func peerContext(ctx context.Context, c net.Conn) context.Context {
	if lc, ok := c.(*limitedConn); ok {
		c = lc.Conn
	}
	p := peer{uid: -1}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		p.err = fmt.Errorf("not a unix socket connection")
		return context.WithValue(ctx, peerKey{}, p)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		p.err = err
		return context.WithValue(ctx, peerKey{}, p)
	}
	var cred *unix.Ucred
	cerr := raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	switch {
	case cerr != nil:
		p.err = cerr
	case err != nil:
		p.err = err
	default:
		p.uid, p.pid = int(cred.Uid), int(cred.Pid)
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// peerOf returns the peer recorded by peerContext.
func peerOf(ctx context.Context) (peer, bool) {
	p, ok := ctx.Value(peerKey{}).(peer)
	return p, ok
}
