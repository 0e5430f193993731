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
	"time"

	"github.com/photon-init/photon-init/internal/safe"
)

// ExecIDHeader is the response header of an exec upgrade that names the
// session, for /v1/exec/ID/resize and /v1/exec/ID.
const ExecIDHeader = "Photon-Exec-Id"

// execDrain is how long the output is still copied once the process has
// exited: a process it left behind may hold the pipes open.
const execDrain = 2 * time.Second

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
		e.info.Error = err.Error()
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
// the server's are frames (see WriteFrame) ending with a FrameExit.
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
	name := r.PathValue("name")
	// The session outlives the request's context, which net/http cancels
	// as soon as the hijacked connection's reader sees the end of the
	// client's input: it lasts until the process ends, the client goes or
	// the server shuts down.
	ctx, cancel := context.WithCancel(serveContext(r))
	defer cancel()
	sess, err := c.Exec(ctx, name, opts)
	if err != nil {
		return err
	}
	e := &execEntry{
		info: ExecInfo{ID: newExecID(), Container: name, Cmd: opts.Cmd, TTY: opts.TTY, Running: true},
		sess: sess,
	}
	defer s.hijack()()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		sess.Close()
		return fmt.Errorf("exec: take over the connection: %w", err)
	}
	s.execs.add(e)
	conn.SetDeadline(time.Time{})
	conn.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n%s: %s\r\n\r\n", ExecIDHeader, e.info.ID)
	if err := brw.Flush(); err != nil {
		sess.Close()
		conn.Close()
		s.execs.end(e, nil, fmt.Errorf("client gone before the process started"))
		return nil
	}
	// Bytes the client sent early are in brw's buffer; the rest is read
	// from the connection itself, not through net/http's reader.
	in := io.MultiReader(io.LimitReader(brw.Reader, int64(brw.Reader.Buffered())), conn)
	s.runExec(ctx, e, opts, conn, in)
	return nil
}

// frameWriter writes frames to the client from several goroutines, each
// write bounded by the write timeout; after a failed write it fails fast.
type frameWriter struct {
	mu      sync.Mutex
	conn    net.Conn
	timeout time.Duration
	err     error
}

// close makes further writes fail: nothing follows the exit frame.
func (f *frameWriter) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = net.ErrClosed
	}
}

func (f *frameWriter) write(t FrameType, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.conn.SetWriteDeadline(time.Now().Add(f.timeout))
	f.err = WriteFrame(f.conn, t, p)
	return f.err
}

// runExec copies between the client and the session until the process has
// exited (then sends its exit code) or the client is gone (then closes the
// session, which kills the process).
func (s *Server) runExec(ctx context.Context, e *execEntry, opts ExecOptions, conn net.Conn, in io.Reader) {
	sess := e.sess
	id := e.info.ID
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gone := make(chan struct{}) // closed when the client is gone
	var goneOnce sync.Once
	clientGone := func() { goneOnce.Do(func() { close(gone) }) }
	fw := &frameWriter{conn: conn, timeout: s.opts.WriteTimeout}

	var outputs sync.WaitGroup
	copyOut := func(r io.Reader, t FrameType) {
		if r == nil {
			return
		}
		outputs.Add(1)
		safe.Go(s.log, "exec "+id+": output", func() {
			defer outputs.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := r.Read(buf)
				if n > 0 && fw.write(t, buf[:n]) != nil {
					clientGone()
					return
				}
				if err != nil {
					return
				}
			}
		})
	}
	copyOut(sess.Stdout(), FrameStdout)
	copyOut(sess.Stderr(), FrameStderr)

	// The client's input. Its end is the end of the process's input when
	// the client sends input without a terminal (a half-closed
	// connection); otherwise it is the client going away.
	stdin := sess.Stdin()
	safe.Go(s.log, "exec "+id+": input", func() {
		var err error
		if stdin != nil {
			_, err = io.Copy(stdin, in)
		} else {
			_, err = io.Copy(io.Discard, in)
		}
		if ctx.Err() != nil {
			return
		}
		if stdin != nil && !opts.TTY && err == nil {
			stdin.Close()
			return
		}
		if err == nil || isConnError(err) {
			clientGone()
		}
		// Otherwise the process stopped reading its input (it closed
		// it or exited); its output and exit still go to the client.
	})

	type result struct {
		code int
		err  error
	}
	waited := make(chan result, 1)
	safe.Go(s.log, "exec "+id+": wait", func() {
		code, err := sess.Wait(ctx)
		waited <- result{code, err}
	})

	var res result
	select {
	case res = <-waited:
		// The output that is still on its way, for a short time.
		select {
		case <-s.waitGroupDone(&outputs):
		case <-time.After(execDrain):
		case <-gone:
		}
		var code *int
		if res.err == nil {
			code = &res.code
		}
		s.execs.end(e, code, res.err)
		if data, err := json.Marshal(e.snapshot()); err == nil {
			fw.write(FrameExit, data)
		}
	case <-gone:
		res.err = errors.New("the client went away")
	case <-ctx.Done():
		res.err = errors.New("the control socket is shutting down")
	}
	fw.close()
	if err := sess.Close(); err != nil {
		s.log.Warn(fmt.Sprintf("exec %s in %s: close: %v", id, e.info.Container, err))
	}
	conn.Close()
	if e.snapshot().Running {
		// Close killed the process: wait briefly to record how it ended.
		select {
		case r := <-waited:
			var code *int
			if r.err == nil {
				code = &r.code
			}
			s.execs.end(e, code, res.err)
		case <-time.After(execDrain):
			s.execs.end(e, nil, res.err)
		}
	}
	cancel()
	// The copiers end once Close has released the streams; one that an
	// implementation leaves blocked is not waited for forever.
	select {
	case <-s.waitGroupDone(&outputs):
	case <-time.After(execDrain):
		s.log.Warn(fmt.Sprintf("exec %s in %s: output still blocked after close", id, e.info.Container))
	}
}

// waitGroupDone returns a channel closed once wg's count is zero.
func (s *Server) waitGroupDone(wg *sync.WaitGroup) <-chan struct{} {
	ch := make(chan struct{})
	safe.Go(s.log, "exec: wait for output", func() {
		wg.Wait()
		close(ch)
	})
	return ch
}

// isConnError reports whether err is the connection failing (as opposed
// to the process's input refusing the bytes).
func isConnError(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed)
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
