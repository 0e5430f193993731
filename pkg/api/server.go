package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/photon-init/photon-init/internal/safe"
)

// Defaults of Options.
const (
	DefaultMaxConns     = 256
	DefaultWriteTimeout = 30 * time.Second
)

// Options configure a Server.
type Options struct {
	// Containers answers the container endpoints; nil answers them 503.
	Containers Containers
	// Machine answers the timeline and power endpoints; nil answers them
	// 501 ("photon-init run" has no machine of its own).
	Machine Machine
	// Log receives the server's warnings and errors; nil discards them.
	Log *slog.Logger
	// Version is photon-init's version, for /v1/version.
	Version string
	// MaxConns bounds the connections served at once (DefaultMaxConns
	// when 0); further ones are answered 503.
	MaxConns int
	// WriteTimeout is how long one write to a client may take before the
	// client is dropped (DefaultWriteTimeout when 0): a client that
	// stops reading a stream cannot hold a handler forever.
	WriteTimeout time.Duration
}

// Server answers the control API. One Server serves one listener.
type Server struct {
	opts  Options
	log   *slog.Logger
	execs *execTable

	// hijacked counts the exec handlers, which http.Server.Shutdown does
	// not wait for (a WaitGroup would not do: handlers may begin while
	// Serve already waits).
	mu       sync.Mutex
	hijacked int
	idle     *sync.Cond // signalled when hijacked drops to 0
}

// hijack counts an exec handler in; the returned function counts it out.
func (s *Server) hijack() func() {
	s.mu.Lock()
	s.hijacked++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.hijacked--
		if s.hijacked == 0 {
			s.idle.Broadcast()
		}
		s.mu.Unlock()
	}
}

// waitHijacked waits until no exec handler runs.
func (s *Server) waitHijacked() {
	s.mu.Lock()
	for s.hijacked > 0 {
		s.idle.Wait()
	}
	s.mu.Unlock()
}

// NewServer returns a server for opts.
func NewServer(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	s := &Server{opts: opts, log: opts.Log, execs: newExecTable()}
	s.idle = sync.NewCond(&s.mu)
	return s
}

// ListenAndServe creates the socket at path (see Listen), serves on it
// until ctx is done, and removes it.
func (s *Server) ListenAndServe(ctx context.Context, path string) error {
	l, err := Listen(path)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	return s.Serve(ctx, l)
}

// Serve answers requests on l until ctx is done, then ends every request
// (their contexts are ctx's children), closes l and returns nil once the
// handlers have returned. Only uid 0 is served (SO_PEERCRED), whatever
// the socket's mode.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	// Cancelled when ctx is, or when serving fails: either ends the
	// requests and exec sessions still running.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithValue(ctx, serveKey{}, ctx) },
		ConnContext:       peerContext,
	}
	done := make(chan struct{})
	shutDown := make(chan struct{})
	safe.Go(s.log, "control socket: shutdown", func() {
		defer close(shutDown)
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		// Requests' contexts are ctx's children: streams end at once.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	})
	err := srv.Serve(&limitListener{Listener: l, max: s.opts.MaxConns, log: s.log})
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err != nil {
		cancel()
		srv.Close()
		err = fmt.Errorf("control socket: %w", err)
	}
	// Shutdown returns once every connection is idle or hijacked, so no
	// exec handler begins after it; then wait for those that run.
	<-shutDown
	s.waitHijacked()
	return err
}

type serveKey struct{}

// serveContext returns the context Serve was given (cancelled when the
// server shuts down), from a request's context. Actions get it rather
// than the request's context: a stop, once asked for, is carried out even
// if the client goes away meanwhile.
func serveContext(r *http.Request) context.Context {
	if ctx, ok := r.Context().Value(serveKey{}).(context.Context); ok {
		return ctx
	}
	return context.WithoutCancel(r.Context())
}

// handler returns the API's HTTP handler. The peer check needs the
// credentials that Serve's ConnContext records.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				s.writeError(w, r, err)
			}
		})
	}
	handle("GET /v1/version", s.version)
	handle("GET /v1/containers", s.list)
	handle("GET /v1/containers/{name}", s.inspect)
	handle("POST /v1/containers/{name}/start", s.start)
	handle("POST /v1/containers/{name}/stop", s.stop)
	handle("POST /v1/containers/{name}/restart", s.restart)
	handle("POST /v1/containers/{name}/kill", s.kill)
	handle("GET /v1/containers/{name}/logs", s.logs)
	handle("POST /v1/containers/{name}/exec", s.exec)
	handle("GET /v1/exec/{id}", s.execInspect)
	handle("POST /v1/exec/{id}/resize", s.execResize)
	handle("GET /v1/events", s.events)
	handle("GET /v1/timeline", s.timeline)
	handle("POST /v1/power/{action}", s.power)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error(fmt.Sprintf("control socket: %s %s: panic: %v\n%s", r.Method, r.URL.Path, v, debug.Stack()))
				s.writeError(w, r, Errorf(http.StatusInternalServerError, "internal error"))
			}
		}()
		if p, ok := peerOf(r.Context()); ok {
			if p.err != nil {
				s.writeError(w, r, Errorf(http.StatusForbidden, "control socket: peer credentials: %v", p.err))
				return
			}
			if p.uid != 0 {
				s.writeError(w, r, Errorf(http.StatusForbidden, "the control socket is for root only (peer uid %d)", p.uid))
				return
			}
		}
		if _, pattern := mux.Handler(r); pattern == "" {
			s.noRoute(w, r, mux)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// noRoute answers a request that no route takes as JSON, with the status
// (404 or 405, with Allow) that the mux would give.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) {
	rec := &statusRecorder{header: http.Header{}}
	h, _ := mux.Handler(r)
	h.ServeHTTP(rec, r)
	if allow := rec.header.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
	}
	status := rec.status
	if status == 0 || status < 400 {
		status = http.StatusNotFound
	}
	msg := "no such endpoint"
	if status == http.StatusMethodNotAllowed {
		msg = "method not allowed (allowed: " + rec.header.Get("Allow") + ")"
	}
	s.writeError(w, r, Errorf(status, "%s %s: %s", r.Method, r.URL.Path, msg))
}

// statusRecorder keeps what the mux's own 404 and 405 handlers write.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (r *statusRecorder) WriteHeader(status int)      { r.status = status }

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		data, _ = json.Marshal(Message{Message: "encode answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}

// writeError answers err as {"message": ...} with its status; server-side
// failures are logged too.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := StatusOf(err)
	if status >= 500 && status != http.StatusNotImplemented && r.Context().Err() == nil {
		s.log.Warn(fmt.Sprintf("control socket: %s %s: %v", r.Method, r.URL.Path, err))
	}
	writeJSON(w, status, Message{Message: err.Error()})
}

// decodeBody decodes a JSON request body strictly into v.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(http.StatusBadRequest, "request body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errorf(http.StatusBadRequest, "request body: more than one JSON value")
	}
	return nil
}

func (s *Server) containers() (Containers, error) {
	if s.opts.Containers == nil {
		return nil, Errorf(http.StatusServiceUnavailable, "the container engine is not running")
	}
	return s.opts.Containers, nil
}

func (s *Server) machine() (Machine, error) {
	if s.opts.Machine == nil {
		return nil, Errorf(http.StatusNotImplemented, "this photon-init does not run the machine (photon-init run): no boot timeline, no power requests")
	}
	return s.opts.Machine, nil
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, VersionInfo{Version: s.opts.Version, API: Version, Go: runtime.Version()})
	return nil
}
