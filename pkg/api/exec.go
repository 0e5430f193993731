package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/photon-init/photon-init/internal/safe"
)

// ExecIDHeader is the response header of an exec upgrade that names the
// session, for /v1/exec/ID/resize and /v1/exec/ID.
const ExecIDHeader = "Photon-Exec-Id"

// killWait is how long a session closed because its client left is
// waited for, to record how its process ended.
const killWait = 2 * time.Second

// execKeep is how many ended sessions /v1/exec/ID still knows.
const execKeep = 64

// execTable knows the running exec sessions and the last ended ones.
type execTable struct {
	mu    sync.Mutex
	byID  map[string]*execEntry
	ended []string // oldest first, at most execKeep
}

type execEntry struct {
	mu   sync.Mutex
	info ExecInfo
	sess ExecSession
}

func newExecTable() *execTable { return &execTable{byID: map[string]*execEntry{}} }

func (t *execTable) add(e *execEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byID[e.info.ID] = e
}

func (t *execTable) get(id string) (*execEntry, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byID[id]
	if !ok {
		return nil, Errorf(http.StatusNotFound, "no exec session %q", id)
	}
	return e, nil
}

// end records the session's end and forgets the oldest ended ones.
func (t *execTable) end(e *execEntry, code *int, err error) {
	e.mu.Lock()
	e.info.Running = false
	e.info.ExitCode = code
	if err != nil {
		// The first line: a panic's stack is for the log.
		e.info.Error, _, _ = strings.Cut(err.Error(), "\n")
	}
	e.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ended = append(t.ended, e.info.ID)
	for len(t.ended) > execKeep {
		delete(t.byID, t.ended[0])
		t.ended = t.ended[1:]
	}
}

func (e *execEntry) snapshot() ExecInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	info := e.info
	info.Cmd = append([]string(nil), info.Cmd...)
	return info
}

func newExecID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// isUpgrade reports whether r asks for the raw stream (Connection: Upgrade,
// Upgrade: tcp).
func isUpgrade(r *http.Request) bool {
	hasToken := func(h, token string) bool {
		for _, v := range r.Header.Values(h) {
			for _, t := range strings.Split(v, ",") {
				if strings.EqualFold(strings.TrimSpace(t), token) {
					return true
				}
			}
		}
		return false
	}
	return hasToken("Connection", "upgrade") && hasToken("Upgrade", "tcp")
}

// exec starts a process in a container and turns the connection into its
// stream: the client's bytes after the 101 answer are the process's input,
// the server's are frames (see WriteFrame) ending with a FrameExit. The
// connection is taken over before the process starts, since the process's
// streams are the connection's; a failure to start is then answered as an
// ordinary HTTP error, written by hand.
func (s *Server) exec(w http.ResponseWriter, r *http.Request) error {
	c, err := s.containers()
	if err != nil {
		return err
	}
	if !isUpgrade(r) {
		return Errorf(http.StatusBadRequest, "exec needs a connection upgrade (Connection: Upgrade, Upgrade: tcp)")
	}
	var opts ExecOptions
	if err := decodeBody(w, r, &opts); err != nil {
		return err
	}
	if len(opts.Cmd) == 0 || opts.Cmd[0] == "" {
		return Errorf(http.StatusBadRequest, "exec: cmd: a command is required")
	}
	for i, kv := range opts.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return Errorf(http.StatusBadRequest, "exec: env[%d]: %q is not KEY=VALUE", i, kv)
		}
	}
	defer s.hijack()()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return fmt.Errorf("exec: take over the connection: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Time{})
	// The session outlives the request's context, which net/http cancels
	// as soon as the hijacked connection's reader sees the end of the
	// client's input: it lasts until the process ends, the client goes or
	// the server shuts down.
	ctx, cancel := context.WithCancel(serveContext(r))
	defer cancel()
	// Bytes the client sent early are in brw's buffer; the rest is read
	// from the connection itself, not through net/http's reader.
	in := io.MultiReader(io.LimitReader(brw.Reader, int64(brw.Reader.Buffered())), conn)
	x := &execConn{
		s:     s,
		conn:  conn,
		in:    in,
		opts:  opts,
		fw:    &frameWriter{conn: conn, timeout: s.opts.WriteTimeout, ready: make(chan struct{})},
		gone:  make(chan struct{}),
		entry: &execEntry{info: ExecInfo{ID: newExecID(), Container: r.PathValue("name"), Cmd: opts.Cmd, TTY: opts.TTY, Running: true}},
	}
	x.run(ctx, c)
	return nil
}

// execConn is one exec session's connection.
type execConn struct {
	s     *Server
	conn  net.Conn
	in    io.Reader // the client's bytes
	opts  ExecOptions
	fw    *frameWriter
	entry *execEntry

	gone     chan struct{} // closed when the client is gone
	goneOnce sync.Once
}

// clientGone records that the client went away.
func (x *execConn) clientGone() { x.goneOnce.Do(func() { close(x.gone) }) }

// run starts the process with the connection as its streams, answers 101
// (or the error), and waits until the process has exited (then sends its
// exit code) or the client is gone (then closes the session, which kills
// the process).
func (x *execConn) run(ctx context.Context, c Containers) {
	s, e, id := x.s, x.entry, x.entry.info.ID
	stdio := ExecIO{Stdout: &frameStream{x: x, t: FrameStdout}}
	if !x.opts.TTY {
		stdio.Stderr = &frameStream{x: x, t: FrameStderr}
	}
	if x.opts.Stdin {
		stdio.Stdin = &clientInput{x: x}
	}
	sess, err := c.Exec(ctx, e.info.Container, x.opts, stdio)
	if err != nil {
		x.fw.fail()
		if ctx.Err() == nil && StatusOf(err) >= 500 {
			s.log.Warn(fmt.Sprintf("control socket: exec in %s: %v", e.info.Container, err))
		}
		x.conn.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		writeRawError(x.conn, err)
		return
	}
	e.sess = sess
	s.execs.add(e)
	x.conn.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	_, err = fmt.Fprintf(x.conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n%s: %s\r\n\r\n", ExecIDHeader, id)
	if err != nil {
		x.clientGone()
	}
	x.fw.open()
	if !x.opts.Stdin {
		// Nobody else reads the connection: its end is the client's.
		safe.Go(s.log, "exec "+id+": watch the client", func() {
			io.Copy(io.Discard, x.in)
			x.clientGone()
		})
	}

	type result struct {
		code int
		err  error
	}
	waited := make(chan result, 1)
	safe.Go(s.log, "exec "+id+": wait", func() {
		var code int
		// A Wait that panics is a failed wait, not a session that hangs.
		err := safe.Call("exec "+id+": wait", func() error {
			var err error
			code, err = sess.Wait(ctx)
			return err
		})
		waited <- result{code, err}
	})
	record := func(r result, why error) {
		var code *int
		if r.err == nil {
			code = &r.code
		}
		if why == nil {
			why = r.err
		}
		s.execs.end(e, code, why)
	}
	select {
	case r := <-waited:
		record(r, nil)
		if data, err := json.Marshal(e.snapshot()); err == nil {
			x.fw.write(FrameExit, data)
		}
		x.fw.fail()
		x.closeSession(sess)
		return
	case <-x.gone:
		err = errors.New("the client went away")
	case <-ctx.Done():
		err = errors.New("the control socket is shutting down")
	}
	x.fw.fail()
	x.closeSession(sess)
	// Close killed the process: wait briefly to record how it ended.
	select {
	case r := <-waited:
		record(r, err)
	case <-time.After(killWait):
		record(result{err: err}, err)
	}
}

// closeSession closes the connection, which ends a write to the client or
// a read of its input that the runtime may be blocked in, then the
// session.
func (x *execConn) closeSession(sess ExecSession) {
	x.conn.Close()
	if err := sess.Close(); err != nil {
		x.s.log.Warn(fmt.Sprintf("exec %s in %s: close: %v", x.entry.info.ID, x.entry.info.Container, err))
	}
}

// writeRawError answers err on a taken-over connection as the server
// would have.
func writeRawError(w io.Writer, err error) {
	status := StatusOf(err)
	body, _ := json.Marshal(Message{Message: err.Error()})
	body = append(body, '\n')
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}

// frameStream is the process's stdout or stderr: each write is sent as
// frames. A failed write means the client is gone.
type frameStream struct {
	x *execConn
	t FrameType
}

func (f *frameStream) Write(p []byte) (int, error) {
	for done := 0; done < len(p); {
		n := min(len(p)-done, 32<<10)
		if err := f.x.fw.write(f.t, p[done:done+n]); err != nil {
			f.x.clientGone()
			return done, err
		}
		done += n
	}
	return len(p), nil
}

// clientInput is the process's stdin: the client's bytes. Its end is the
// end of the process's input when the process has no terminal (the client
// half-closed the connection); with a terminal, or on a failed read, it
// is the client going away.
type clientInput struct {
	x *execConn
}

func (c *clientInput) Read(p []byte) (int, error) {
	n, err := c.x.in.Read(p)
	if err != nil && (err != io.EOF || c.x.opts.TTY) {
		c.x.clientGone()
	}
	return n, err
}

// frameWriter writes frames to the client from several goroutines, each
// write bounded by the write timeout. Writes wait until open (the 101
// answer is out) and fail after fail or a failed write.
type frameWriter struct {
	mu      sync.Mutex // serialises frames
	conn    net.Conn
	timeout time.Duration
	ready   chan struct{} // closed by open or fail
	once    sync.Once
	failed  atomic.Bool // set by fail or a failed write; fail does not wait for mu
}

// open lets writes through.
func (f *frameWriter) open() { f.once.Do(func() { close(f.ready) }) }

// fail makes further writes fail: nothing follows the exit frame, and
// nothing precedes the answer. A write in progress ends with the
// connection.
func (f *frameWriter) fail() {
	f.failed.Store(true)
	f.open()
}

func (f *frameWriter) write(t FrameType, p []byte) error {
	<-f.ready
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed.Load() {
		return net.ErrClosed
	}
	f.conn.SetWriteDeadline(time.Now().Add(f.timeout))
	if err := WriteFrame(f.conn, t, p); err != nil {
		f.failed.Store(true)
		return err
	}
	return nil
}

func (s *Server) execInspect(w http.ResponseWriter, r *http.Request) error {
	e, err := s.execs.get(r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, e.snapshot())
	return nil
}

func (s *Server) execResize(w http.ResponseWriter, r *http.Request) error {
	e, err := s.execs.get(r.PathValue("id"))
	if err != nil {
		return err
	}
	info := e.snapshot()
	if !info.TTY {
		return Errorf(http.StatusBadRequest, "exec %s has no terminal to resize", info.ID)
	}
	if !info.Running {
		return Errorf(http.StatusConflict, "exec %s has ended", info.ID)
	}
	q := r.URL.Query()
	dim := func(name string) (uint16, error) {
		n, err := strconv.ParseUint(q.Get(name), 10, 16)
		if err != nil || n == 0 {
			return 0, Errorf(http.StatusBadRequest, "resize: %s: %q is not a size from 1 to 65535", name, q.Get(name))
		}
		return uint16(n), nil
	}
	h, err := dim("h")
	if err != nil {
		return err
	}
	wd, err := dim("w")
	if err != nil {
		return err
	}
	if err := e.sess.Resize(TermSize{Height: h, Width: wd}); err != nil {
		return fmt.Errorf("resize exec %s: %w", info.ID, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
