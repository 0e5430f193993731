package apitest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/api/client"
)

// Server is an api.Server on a real unix socket.
type Server struct {
	// Path is the socket's path.
	Path string
	// Fake is the backend, when Start filled it in.
	Fake *Containers
	// Machine is opts.Machine when it is a *Machine.
	Machine *Machine
	// Client talks to the socket.
	Client *client.Client

	cancel context.CancelFunc
	done   chan error
	ended  bool
}

// Start serves opts (with NewContainers when opts has no Containers, and
// version "1.2.3-test") on a socket in a fresh directory, as
// DIR/run/photon/photon.sock; the server is stopped when the test ends.
func Start(t testing.TB, opts api.Options) *Server {
	t.Helper()
	// Short: a socket's path is at most 107 bytes.
	dir, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{Path: filepath.Join(dir, "run", "photon", "photon.sock"), done: make(chan error, 1)}
	if opts.Containers == nil {
		s.Fake = NewContainers()
		opts.Containers = s.Fake
	}
	s.Machine, _ = opts.Machine.(*Machine)
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if opts.Version == "" {
		opts.Version = "1.2.3-test"
	}
	l, err := api.Listen(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	srv := api.NewServer(opts)
	go func() { s.done <- srv.Serve(ctx, l) }()
	s.Client = client.New(client.Options{Socket: s.Path})
	t.Cleanup(func() {
		s.Client.Close()
		s.Stop(t)
	})
	return s
}

// Stop stops the server and waits (10s at most) for Serve to return.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.ended {
		return
	}
	s.cancel()
	select {
	case err := <-s.done:
		s.ended = true
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of its context's end")
	}
}

// Raw sends a request over the socket with a plain HTTP client and returns
// the answer with its body read.
func (s *Server) Raw(t testing.TB, method, path string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	hc := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", s.Path)
	}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://photon"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// WaitFor polls cond for up to 5 seconds and fails the test if it never
// holds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
