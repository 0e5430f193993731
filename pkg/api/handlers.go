package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func (s *Server) list(w http.ResponseWriter, r *http.Request) error {
	c, err := s.containers()
	if err != nil {
		return err
	}
	list, err := c.List(r.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []ContainerInfo{}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) inspect(w http.ResponseWriter, r *http.Request) error {
	c, err := s.containers()
	if err != nil {
		return err
	}
	info, err := c.Inspect(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) start(w http.ResponseWriter, r *http.Request) error {
	c, err := s.containers()
	if err != nil {
		return err
	}
	if err := c.Start(serveContext(r), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) stop(w http.ResponseWriter, r *http.Request) error {
	return s.stopOrRestart(w, r, Containers.Stop)
}

func (s *Server) restart(w http.ResponseWriter, r *http.Request) error {
	return s.stopOrRestart(w, r, Containers.Restart)
}

func (s *Server) stopOrRestart(w http.ResponseWriter, r *http.Request, op func(Containers, context.Context, string, StopOptions) error) error {
	c, err := s.containers()
	if err != nil {
		return err
	}
	var opts StopOptions
	if v := r.URL.Query().Get("timeout"); v != "" {
		if opts.Timeout, err = ParseTimeout(v); err != nil {
			return err
		}
	}
	if err := op(c, serveContext(r), r.PathValue("name"), opts); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) kill(w http.ResponseWriter, r *http.Request) error {
	c, err := s.containers()
	if err != nil {
		return err
	}
	sig := unix.SIGKILL
	if v := r.URL.Query().Get("signal"); v != "" {
		if sig, err = ParseSignal(v); err != nil {
			return err
		}
	}
	if err := c.Kill(serveContext(r), r.PathValue("name"), sig); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) error {
	c, err := s.containers()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	opts := LogOptions{Tail: -1}
	if v := q.Get("tail"); v != "" && v != "all" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return Errorf(http.StatusBadRequest, "tail: %q is not a number of lines", v)
		}
		opts.Tail = n
	}
	if opts.Since, err = queryTime(q.Get("since")); err != nil {
		return err
	}
	if opts.Follow, err = queryBool("follow", q.Get("follow")); err != nil {
		return err
	}
	st, err := c.Logs(r.Context(), r.PathValue("name"), opts)
	if err != nil {
		return err
	}
	s.serveStream(w, r, streamOf(st))
	return nil
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	c, err := s.containers()
	if err != nil {
		return err
	}
	since, err := queryTime(r.URL.Query().Get("since"))
	if err != nil {
		return err
	}
	st, err := c.Events(r.Context(), since)
	if err != nil {
		return err
	}
	s.serveStream(w, r, streamOf(st))
	return nil
}

func (s *Server) timeline(w http.ResponseWriter, r *http.Request) error {
	m, err := s.machine()
	if err != nil {
		return err
	}
	doc, err := m.Timeline(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

func (s *Server) power(w http.ResponseWriter, r *http.Request) error {
	action := PowerAction(r.PathValue("action"))
	if !action.Valid() {
		return Errorf(http.StatusNotFound, "power: unknown action %q (poweroff, reboot or halt)", action)
	}
	m, err := s.machine()
	if err != nil {
		return err
	}
	if err := m.Power(serveContext(r), action); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, Message{Message: string(action) + " requested"})
	return nil
}

// jsonStream is a Stream whose values are encoded as JSON lines.
type jsonStream interface {
	next(ctx context.Context) ([]byte, error)
	close()
}

type typedStream[T any] struct {
	st   Stream[T]
	once sync.Once
}

func streamOf[T any](st Stream[T]) jsonStream { return &typedStream[T]{st: st} }

// next returns the next value as JSON; a panic of the stream is returned
// as *streamPanic (the answer's status is sent already).
func (t *typedStream[T]) next(ctx context.Context) (line []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &streamPanic{value: v, stack: debug.Stack()}
		}
	}()
	v, err := t.st.Next(ctx)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// streamPanic is a stream's panic, for the log.
type streamPanic struct {
	value any
	stack []byte
}

func (p *streamPanic) Error() string { return fmt.Sprintf("panic: %v\n%s", p.value, p.stack) }

func (t *typedStream[T]) close() { t.once.Do(func() { t.st.Close() }) }

// streamError is the last line of a stream that failed after it began.
type streamError struct {
	Error string `json:"error"`
}

// serveStream answers a stream as newline-delimited JSON, one value a
// line, each flushed at once. It ends when the stream does (io.EOF), when
// the client is gone (the request's context) or a write to it takes longer
// than the write timeout; a failure of the stream itself is a last line
// {"error": "..."}. The stream is closed in every case.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, st jsonStream) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer st.close()
	// A stream that does not watch ctx is unblocked by closing it.
	stop := context.AfterFunc(ctx, st.close)
	defer stop()

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	write := func(line []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		if _, err := w.Write(append(line, '\n')); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout)); rc.Flush() != nil {
		return
	}
	for {
		line, err := st.next(ctx)
		switch {
		case err == nil:
			if !write(line) {
				return
			}
		case errors.Is(err, io.EOF), ctx.Err() != nil:
			return
		default:
			msg := err.Error()
			var sp *streamPanic
			if errors.As(err, &sp) {
				s.log.Error(fmt.Sprintf("control socket: %s %s: %v", r.Method, r.URL.Path, err))
				msg = "internal error"
			}
			line, _ := json.Marshal(streamError{Error: msg})
			write(line)
			return
		}
	}
}

// queryTime parses a time parameter: RFC 3339 (with or without fractional
// seconds) or Unix seconds ("1700000000.5"); "" is the zero time.
func queryTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	return time.Time{}, Errorf(http.StatusBadRequest, "since: %q is neither an RFC 3339 time nor Unix seconds", v)
}

func queryBool(name, v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, Errorf(http.StatusBadRequest, "%s: %q is not true or false", name, v)
	}
	return b, nil
}

// ParseTimeout parses a stop timeout: a Go duration ("10s", "1m30s") or
// whole seconds ("10").
func ParseTimeout(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, Errorf(http.StatusBadRequest, "timeout: %q is not a duration (10s) or a number of seconds", v)
	}
	return d, nil
}

// ParseSignal parses a signal given as a name ("SIGHUP", "HUP", "hup",
// "SIGRTMIN+3") or a number ("1").
func ParseSignal(v string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(v); err == nil {
		if n <= 0 || n > sigRTMax {
			return 0, Errorf(http.StatusBadRequest, "signal: %d is out of range (1-%d)", n, sigRTMax)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(v)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if base, off, ok := strings.Cut(name, "+"); ok && (base == "SIGRTMIN") {
		n, err := strconv.Atoi(off)
		if err == nil && n >= 0 && sigRTMin+n <= sigRTMax {
			return syscall.Signal(sigRTMin + n), nil
		}
	}
	switch name {
	case "SIGRTMIN":
		return syscall.Signal(sigRTMin), nil
	case "SIGRTMAX":
		return syscall.Signal(sigRTMax), nil
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, Errorf(http.StatusBadRequest, "signal: unknown signal %q", v)
}

// SIGRTMIN and SIGRTMAX as glibc and systemd number them (the kernel's
// 32 and 33 are kept by glibc).
const (
	sigRTMin = 34
	sigRTMax = 64
)
