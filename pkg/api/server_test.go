package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/api/internal/apitest"
)

// envDial makes the test binary a client that GETs /v1/containers on the
// socket it names and prints the status (see TestMain).
const envDial = "PHOTON_API_TEST_DIAL"

func TestMain(m *testing.M) {
	if path := os.Getenv(envDial); path != "" {
		hc := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return net.Dial("unix", path)
		}}}
		resp, err := hc.Get("http://photon/v1/containers")
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%d %s", resp.StatusCode, body)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func goroutineCount() int { return runtime.NumGoroutine() }

// goroutinesBackTo waits until the goroutine count is at most base.
func goroutinesBackTo(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want at most %d; stacks:\n%s", n, base, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSocket(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	fi, err := os.Stat(ts.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	entries, _ := os.ReadDir(filepath.Dir(ts.Path))
	if len(entries) != 1 {
		t.Errorf("socket directory holds %d entries, want only the socket", len(entries))
	}
	// A second server may not take over a live socket.
	if _, err := api.Listen(ts.Path); err == nil || !strings.Contains(err.Error(), "another server") {
		t.Errorf("Listen on a live socket: %v, want 'another server is listening'", err)
	}
	ts.Stop(t)

	// ListenAndServe removes its socket when it returns.
	path := filepath.Join(filepath.Dir(ts.Path), "other.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(api.Options{}).ListenAndServe(ctx, path) }()
	apitest.WaitFor(t, "the socket", func() bool { _, err := os.Stat(path); return err == nil })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ListenAndServe: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left behind after ListenAndServe: %v", err)
	}

	// A stale socket (nobody listening) is replaced; a file is not.
	dir := t.TempDir()
	stale := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := api.Listen(stale)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l2.Close()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := api.Listen(file); err == nil {
		t.Error("Listen over a regular file succeeded")
	}
}

func TestContainers(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	ctx := context.Background()
	c := ts.Client

	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "db" || list[1].Name != "web" {
		t.Fatalf("List = %+v", list)
	}
	web, err := c.Inspect(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	want := ts.Fake.Container("web")
	if a, b := mustJSON(t, web), mustJSON(t, want); a != b {
		t.Errorf("Inspect(web):\n got %s\nwant %s", a, b)
	}

	for _, tc := range []struct {
		name   string
		call   func() error
		status error // nil: success
	}{
		{"inspect unknown", func() error { _, err := c.Inspect(ctx, "nope"); return err }, api.ErrNotFound},
		{"start running", func() error { return c.Start(ctx, "web") }, api.ErrConflict},
		{"start exited", func() error { return c.Start(ctx, "db") }, nil},
		{"start unknown", func() error { return c.Start(ctx, "nope") }, api.ErrNotFound},
		{"stop with timeout", func() error { return c.Stop(ctx, "db", api.StopOptions{Timeout: 3 * time.Second}) }, nil},
		{"stop unknown", func() error { return c.Stop(ctx, "nope", api.StopOptions{}) }, api.ErrNotFound},
		{"restart", func() error { return c.Restart(ctx, "db", api.StopOptions{}) }, nil},
		{"kill hup", func() error { return c.Kill(ctx, "web", syscall.SIGHUP) }, nil},
		{"kill stopped", func() error {
			c.Stop(ctx, "db", api.StopOptions{})
			return c.Kill(ctx, "db", syscall.SIGTERM)
		}, api.ErrConflict},
		{"name with slash", func() error { _, err := c.Inspect(ctx, "a/b"); return err }, api.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			switch {
			case tc.status == nil && err != nil:
				t.Fatalf("error %v", err)
			case tc.status != nil && !errors.Is(err, tc.status):
				t.Fatalf("error %v, want status %v", err, tc.status)
			}
		})
	}
	if got, want := strings.Join(ts.Fake.Killed(), ","), "web SIGHUP"; got != want {
		t.Errorf("killed %q, want %q", got, want)
	}
	if got := ts.Fake.Stopped()[0]; got != "db 3s" {
		t.Errorf("stop timeout reached the backend as %q, want \"db 3s\"", got)
	}
	if db, _ := c.Inspect(ctx, "db"); db.Restarts != 1 {
		t.Errorf("db restarts %d after restart, want 1", db.Restarts)
	}
	var apiErr *api.Error
	if _, err := c.Inspect(ctx, "nope"); !errors.As(err, &apiErr) || apiErr.Message != `no container named "nope"` {
		t.Errorf("Inspect(nope) = %v, want the backend's message", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestErrorsJSON checks the raw answers: every failure is JSON
// {"message": ...} with a fitting status.
func TestErrorsJSON(t *testing.T) {
	ts := apitest.Start(t, api.Options{Machine: &apitest.Machine{}})
	for _, tc := range []struct {
		method, path string
		body         string
		status       int
		message      string
	}{
		{"GET", "/v1/containers/nope", "", 404, `no container named "nope"`},
		{"GET", "/v1/nothing", "", 404, "no such endpoint"},
		{"GET", "/v2/containers", "", 404, "no such endpoint"},
		{"DELETE", "/v1/containers", "", 405, "method not allowed"},
		{"POST", "/v1/containers/web/kill?signal=SIGNOPE", "", 400, `unknown signal "SIGNOPE"`},
		{"POST", "/v1/containers/web/kill?signal=99", "", 400, "out of range"},
		{"POST", "/v1/containers/web/stop?timeout=soon", "", 400, "timeout"},
		{"GET", "/v1/containers/web/logs?tail=-3", "", 400, "tail"},
		{"GET", "/v1/containers/web/logs?since=yesterday", "", 400, "since"},
		{"GET", "/v1/containers/web/logs?follow=maybe", "", 400, "follow"},
		{"POST", "/v1/containers/web/exec", `{"cmd":["echo"]}`, 400, "upgrade"},
		{"POST", "/v1/power/explode", "", 404, "unknown action"},
		{"GET", "/v1/exec/0123", "", 404, "no exec session"},
		{"POST", "/v1/containers/web/start", "", 409, "already running"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			resp, data := ts.Raw(t, tc.method, tc.path, body)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d (%s)", resp.StatusCode, tc.status, data)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var m api.Message
			if err := json.Unmarshal(data, &m); err != nil || !strings.Contains(m.Message, tc.message) {
				t.Errorf("body %s, want a message containing %q", data, tc.message)
			}
		})
	}
	resp, _ := ts.Raw(t, "DELETE", "/v1/containers", nil)
	if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "GET") {
		t.Errorf("405 with Allow %q", allow)
	}
}

func TestVersionAndMachine(t *testing.T) {
	ts := apitest.Start(t, api.Options{Machine: &apitest.Machine{}})
	ctx := context.Background()
	v, err := ts.Client.Version(ctx)
	if err != nil || v.Version != "1.2.3-test" || v.API != "v1" || v.Go == "" {
		t.Errorf("Version = %+v, %v", v, err)
	}
	doc, err := ts.Client.Timeline(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Steps) != 2 || doc.Steps[1].Error != "dhcp: no lease" || doc.PID1Start != 412*time.Millisecond {
		t.Errorf("Timeline = %+v", doc)
	}
	for _, a := range []api.PowerAction{api.Reboot, api.Poweroff, api.Halt} {
		if err := ts.Client.Power(ctx, a); err != nil {
			t.Errorf("Power(%s): %v", a, err)
		}
	}
	if got := fmt.Sprint(ts.Machine.Actions()); got != "[reboot poweroff halt]" {
		t.Errorf("power actions %s", got)
	}

	// Without a machine ("photon-init run"): 501.
	noMachine := apitest.Start(t, api.Options{})
	if _, err := noMachine.Client.Timeline(ctx); !errors.Is(err, api.ErrNotImplemented) {
		t.Errorf("Timeline without a machine: %v, want 501", err)
	}
	if err := noMachine.Client.Power(ctx, api.Reboot); !errors.Is(err, api.ErrNotImplemented) {
		t.Errorf("Power without a machine: %v, want 501", err)
	}
}

// panicky is a backend whose List and log streams panic.
type panicky struct {
	*apitest.Containers
}

func (panicky) List(context.Context) ([]api.ContainerInfo, error) { panic("list exploded") }

func (p panicky) Logs(ctx context.Context, name string, opts api.LogOptions) (api.Stream[api.LogEntry], error) {
	return panickyStream{}, nil
}

type panickyStream struct{}

func (panickyStream) Next(context.Context) (api.LogEntry, error) { panic("next exploded") }
func (panickyStream) Close() error                               { return nil }

// TestPanicRecovered: a backend that panics costs its request, never the
// server.
func TestPanicRecovered(t *testing.T) {
	ts := apitest.Start(t, api.Options{Containers: panicky{apitest.NewContainers()}})
	ctx := context.Background()
	if _, err := ts.Client.List(ctx); err == nil || api.StatusOf(err) != 500 || err.Error() != "internal error" {
		t.Errorf("List with a panicking backend: %v", err)
	}
	if err := ts.Client.Logs(ctx, "web", api.LogOptions{}, func(api.LogEntry) error { return nil }); err == nil || err.Error() != "internal error" {
		t.Errorf("Logs with a panicking stream: %v, want internal error", err)
	}
	if _, err := ts.Client.Inspect(ctx, "web"); err != nil {
		t.Errorf("Inspect after the panics: %v", err)
	}
}
