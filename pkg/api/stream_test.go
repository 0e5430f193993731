package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/api/client"
	"github.com/photon-init/photon-init/pkg/api/internal/apitest"
)

func TestLogs(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	ctx := context.Background()
	collect := func(opts api.LogOptions) []string {
		t.Helper()
		var got []string
		err := ts.Client.Logs(ctx, "web", opts, func(e api.LogEntry) error {
			got = append(got, e.Stream+" "+e.Line)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, tc := range []struct {
		name string
		opts api.LogOptions
		want string
	}{
		{"all", api.LogOptions{Tail: -1}, "stdout line 0,stderr line 1,stdout line 2,stderr line 3,stdout line 4"},
		{"tail 2", api.LogOptions{Tail: 2}, "stderr line 3,stdout line 4"},
		{"tail 0", api.LogOptions{Tail: 0}, ""},
		{"since", api.LogOptions{Tail: -1, Since: ts.Fake.LogLines("web")[3].Time}, "stderr line 3,stdout line 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(collect(tc.opts), ","); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if err := ts.Client.Logs(ctx, "nope", api.LogOptions{}, func(api.LogEntry) error { return nil }); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("logs of an unknown container: %v", err)
	}

	// Follow: the old lines, then new ones as they come; the stream is
	// closed on the server once the client stops.
	t.Run("follow", func(t *testing.T) {
		got := make(chan string, 16)
		fctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() {
			errc <- ts.Client.Logs(fctx, "web", api.LogOptions{Tail: 1, Follow: true}, func(e api.LogEntry) error {
				got <- e.Line
				return nil
			})
		}()
		expect := func(want string) {
			t.Helper()
			select {
			case line := <-got:
				if line != want {
					t.Fatalf("line %q, want %q", line, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no line %q within 5s", want)
			}
		}
		expect("line 4")
		apitest.WaitFor(t, "the follower to subscribe", func() bool { return ts.Fake.Followers() == 1 })
		ts.Fake.Emit("web", "new 1")
		expect("new 1")
		ts.Fake.Emit("web", "new 2")
		expect("new 2")
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Logs after cancel: %v", err)
		}
		apitest.WaitFor(t, "the server to close the stream", func() bool { return ts.Fake.StreamsOpen() == 0 })
	})
}

// TestKeepAliveAfterStream: the write deadlines of a stream do not outlive
// it on a connection the client keeps for its next request.
func TestKeepAliveAfterStream(t *testing.T) {
	ts := apitest.Start(t, api.Options{WriteTimeout: 50 * time.Millisecond})
	// One connection for both requests (net/http's client would retry a
	// failed request on a new one and hide the problem).
	conn, err := net.Dial("unix", ts.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	get := func(path string) (int, string) {
		t.Helper()
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: photon\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: body: %v", path, err)
		}
		return resp.StatusCode, string(body)
	}
	if code, body := get("/v1/containers/web/logs"); code != 200 || strings.Count(body, "\n") != 5 {
		t.Fatalf("logs: %d %q", code, body)
	}
	time.Sleep(150 * time.Millisecond)
	if code, body := get("/v1/containers"); code != 200 || !strings.Contains(body, `"name":"web"`) {
		t.Errorf("request after a stream on the same connection: %d %q", code, body)
	}
}

func TestEvents(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := time.Now()
	ts.Client.Stop(ctx, "web", api.StopOptions{})
	events := make(chan api.Event, 16)
	go ts.Client.Events(ctx, before, func(e api.Event) error {
		events <- e
		return nil
	})
	next := func() api.Event {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5s")
		}
		return api.Event{}
	}
	if e := next(); e.Container != "web" || e.From != "running" || e.To != "stopped" {
		t.Errorf("remembered event %+v", e)
	}
	apitest.WaitFor(t, "the subscription", func() bool { return ts.Fake.EventFollowers() == 1 })
	ts.Client.Start(ctx, "web")
	if e := next(); e.Container != "web" || e.To != "running" {
		t.Errorf("new event %+v", e)
	}
}

// TestStreamDisconnect: clients that go away in the middle of a stream,
// politely or by dropping the connection, leave nothing behind: the
// backend's stream is closed and the server's goroutines end.
func TestStreamDisconnect(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	base := runtimeGoroutines()

	for i := range 3 {
		// A raw connection that reads the stream's head and drops.
		conn, err := net.Dial("unix", ts.Path)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /v1/containers/web/logs?follow=true HTTP/1.1\r\nHost: photon\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("follow answer %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || !strings.Contains(line, `"line":"line 0"`) {
			t.Fatalf("first line %q, %v", line, err)
		}
		apitest.WaitFor(t, "the follower", func() bool { return ts.Fake.Followers() == 1 })
		conn.Close()
		apitest.WaitFor(t, fmt.Sprintf("the stream to close after disconnect %d", i), func() bool { return ts.Fake.StreamsOpen() == 0 })
	}
	// An events stream, cancelled through the client.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ts.Client.Events(ctx, time.Time{}, func(api.Event) error { return nil }) }()
	apitest.WaitFor(t, "the events stream", func() bool { return ts.Fake.StreamsOpen() == 1 })
	cancel()
	<-errc
	apitest.WaitFor(t, "the events stream to close", func() bool { return ts.Fake.StreamsOpen() == 0 })
	ts.Client.Close()
	goroutinesBackTo(t, base)
}

// runtimeGoroutines is the goroutine count once the idle ones settled.
func runtimeGoroutines() int {
	time.Sleep(50 * time.Millisecond)
	return goroutineCount()
}

// TestStalledClient: a client that stops reading a stream is dropped after
// the write timeout, and its stream closed.
func TestStalledClient(t *testing.T) {
	ts := apitest.Start(t, api.Options{WriteTimeout: 300 * time.Millisecond})
	conn, err := net.Dial("unix", ts.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Shrink our receive buffer so that the server's writes block soon.
	conn.(*net.UnixConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /v1/containers/web/logs?follow=true HTTP/1.1\r\nHost: photon\r\n\r\n")
	apitest.WaitFor(t, "the follower", func() bool { return ts.Fake.Followers() == 1 })
	stop := make(chan struct{})
	go func() {
		long := strings.Repeat("y", 4000)
		for {
			select {
			case <-stop:
				return
			default:
			}
			ts.Fake.Emit("web", long)
			time.Sleep(time.Millisecond)
		}
	}()
	defer close(stop)
	apitest.WaitFor(t, "the server to drop the stalled client", func() bool { return ts.Fake.StreamsOpen() == 0 })
}

func TestExecPipes(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	code, err := ts.Client.Exec(ctx, "web", api.ExecOptions{Cmd: []string{"echo"}, Stdin: true}, client.ExecIO{
		Stdin:  strings.NewReader("a\nb\nc\n"),
		Stdout: &stdout,
		Stderr: &stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	if code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	if got, want := stdout.String(), "out: a\nout: b\nout: c\nbye\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got, want := stderr.String(), "err: a\nerr: b\nerr: c\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}

	// Without -i the process's input is empty at once.
	stdout.Reset()
	code, err = ts.Client.Exec(ctx, "web", api.ExecOptions{Cmd: []string{"echo"}}, client.ExecIO{Stdout: &stdout})
	if err != nil || code != 0 || stdout.String() != "bye\n" {
		t.Errorf("exec without stdin: code %d, err %v, output %q", code, err, stdout.String())
	}

	for _, tc := range []struct {
		name      string
		container string
		opts      api.ExecOptions
		want      error
	}{
		{"unknown container", "nope", api.ExecOptions{Cmd: []string{"echo"}}, api.ErrNotFound},
		{"not running", "db", api.ExecOptions{Cmd: []string{"echo"}}, api.ErrConflict},
		{"no command", "web", api.ExecOptions{}, api.ErrInvalid},
		{"bad env", "web", api.ExecOptions{Cmd: []string{"echo"}, Env: []string{"NOEQUALS"}}, api.ErrInvalid},
		{"unknown program", "web", api.ExecOptions{Cmd: []string{"nosuch"}}, api.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ts.Client.Exec(ctx, tc.container, tc.opts, client.ExecIO{})
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
	apitest.WaitFor(t, "the sessions to close", func() bool { return ts.Fake.ExecsOpen() == 0 })
}

// TestExecTTY runs the fake shell on a real pseudo-terminal: the line
// discipline echoes input and turns \n into \r\n, the initial size and a
// resize reach the terminal, and the exit code comes back.
func TestExecTTY(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	ctx := context.Background()
	inR, inW := io.Pipe()
	out := &apitest.Buffer{}
	resize := make(chan api.TermSize, 1)
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, err := ts.Client.Exec(ctx, "web", api.ExecOptions{
			Cmd: []string{"shell"}, TTY: true, Stdin: true, Size: api.TermSize{Height: 24, Width: 80},
		}, client.ExecIO{Stdin: inR, Stdout: out, Resize: resize})
		res <- result{code, err}
	}()
	expect := func(want string) {
		t.Helper()
		apitest.WaitFor(t, fmt.Sprintf("%q in the output", want), func() bool { return strings.Contains(out.String(), want) })
	}
	expect("$ ")
	io.WriteString(inW, "hello\n")
	expect("hello\r\nyou said: hello\r\n")
	io.WriteString(inW, "size\n")
	expect("size 24x80\r\n")
	resize <- api.TermSize{Height: 40, Width: 100}
	// The resize goes its own way (POST /v1/exec/ID/resize): ask until it
	// has arrived.
	apitest.WaitFor(t, "the resize", func() bool {
		io.WriteString(inW, "size\n")
		time.Sleep(20 * time.Millisecond)
		return strings.Contains(out.String(), "size 40x100\r\n")
	})
	io.WriteString(inW, "exit 7\n")
	select {
	case r := <-res:
		if r.err != nil || r.code != 7 {
			t.Errorf("exec: code %d, err %v; want 7", r.code, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("exec did not end")
	}
	inW.Close()
	apitest.WaitFor(t, "the session to close", func() bool { return ts.Fake.ExecsOpen() == 0 })
}

// TestExecState: /v1/exec/ID follows a session to its end, and a resize
// of a session without a terminal is refused.
func TestExecState(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inR, inW := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code, _ := ts.Client.Exec(ctx, "web", api.ExecOptions{Cmd: []string{"echo"}, Stdin: true}, client.ExecIO{Stdin: inR})
		done <- code
	}()
	var id string
	select {
	case <-ts.Fake.ExecStarted():
	case <-time.After(5 * time.Second):
		t.Fatal("exec did not start")
	}
	// The session's ID is the one the table knows; find it via a raw
	// exec instead of reaching into the client.
	conn, id := rawExec(t, ts, `{"cmd":["sleep"]}`)
	defer conn.Close()
	info, err := ts.Client.ExecInspect(ctx, id)
	if err != nil || !info.Running || info.Container != "web" || info.Cmd[0] != "sleep" {
		t.Fatalf("ExecInspect = %+v, %v", info, err)
	}
	if err := ts.Client.ExecResize(ctx, id, api.TermSize{Height: 1, Width: 1}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("resize without a terminal: %v, want 400", err)
	}
	conn.Close()
	apitest.WaitFor(t, "the session to end", func() bool {
		info, err := ts.Client.ExecInspect(ctx, id)
		return err == nil && !info.Running
	})
	info, _ = ts.Client.ExecInspect(ctx, id)
	if info.ExitCode == nil || *info.ExitCode != 137 || info.Error != "the client went away" {
		t.Errorf("ended session %+v", info)
	}
	io.WriteString(inW, "x\n")
	inW.Close()
	if code := <-done; code != 1 {
		t.Errorf("echo exit %d, want 1", code)
	}
}

// rawExec starts an exec over a raw connection and returns it after the
// 101 answer, with the session's ID.
func rawExec(t *testing.T, ts *apitest.Server, body string) (net.Conn, string) {
	t.Helper()
	conn, err := net.Dial("unix", ts.Path)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /v1/containers/web/exec HTTP/1.1\r\nHost: photon\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("exec answer %d", resp.StatusCode)
	}
	return conn, resp.Header.Get(api.ExecIDHeader)
}

// TestExecDisconnect: a client that goes away in the middle of an exec
// gets its process killed (the session closed) and leaves no goroutine.
func TestExecDisconnect(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	base := runtimeGoroutines()
	for _, body := range []string{
		`{"cmd":["sleep"]}`,
		`{"cmd":["flood"]}`,
		`{"cmd":["shell"],"tty":true,"stdin":true}`,
	} {
		conn, _ := rawExec(t, ts, body)
		apitest.WaitFor(t, "the session", func() bool { return ts.Fake.ExecsOpen() == 1 })
		// Read a little of the output, then drop.
		conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		conn.Read(make([]byte, 100))
		conn.Close()
		apitest.WaitFor(t, "the session to close after "+body, func() bool { return ts.Fake.ExecsOpen() == 0 })
	}
	// Through the client, by cancelling its context.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := ts.Client.Exec(ctx, "web", api.ExecOptions{Cmd: []string{"flood"}}, client.ExecIO{Stdout: io.Discard})
		errc <- err
	}()
	apitest.WaitFor(t, "the session", func() bool { return ts.Fake.ExecsOpen() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Exec after cancel: %v", err)
	}
	apitest.WaitFor(t, "the session to close", func() bool { return ts.Fake.ExecsOpen() == 0 })
	ts.Client.Close()
	goroutinesBackTo(t, base)
}

// TestManyClients: a hundred clients at once, listing, inspecting,
// following logs and running execs, are all served; afterwards the
// server is back to its idle goroutines.
func TestManyClients(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	base := runtimeGoroutines()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client.New(client.Options{Socket: ts.Path})
			defer c.Close()
			var err error
			switch i % 4 {
			case 0:
				var list []api.ContainerInfo
				list, err = c.List(ctx)
				if err == nil && len(list) != 2 {
					err = fmt.Errorf("list of %d", len(list))
				}
			case 1:
				_, err = c.Inspect(ctx, "web")
			case 2:
				lines := 0
				err = c.Logs(ctx, "web", api.LogOptions{Tail: -1}, func(api.LogEntry) error { lines++; return nil })
				if err == nil && lines < 5 {
					err = fmt.Errorf("%d log lines", lines)
				}
			case 3:
				var out bytes.Buffer
				var code int
				code, err = c.Exec(ctx, "web", api.ExecOptions{Cmd: []string{"echo"}, Stdin: true}, client.ExecIO{Stdin: strings.NewReader("x\n"), Stdout: &out})
				if err == nil && (code != 1 || out.String() != "out: x\nbye\n") {
					err = fmt.Errorf("exec: code %d, output %q", code, out.String())
				}
			}
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	goroutinesBackTo(t, base)
}

// TestMaxConns: beyond MaxConns a connection is answered 503 at once, and
// served again once others have gone.
func TestMaxConns(t *testing.T) {
	ts := apitest.Start(t, api.Options{MaxConns: 2})
	ctx, cancel := context.WithCancel(context.Background())
	for range 2 {
		go ts.Client.Logs(ctx, "web", api.LogOptions{Follow: true}, func(api.LogEntry) error { return nil })
	}
	apitest.WaitFor(t, "two followers", func() bool { return ts.Fake.Followers() == 2 })
	other := client.New(client.Options{Socket: ts.Path})
	defer other.Close()
	if _, err := other.List(context.Background()); !errors.Is(err, api.ErrUnavailable) || !strings.Contains(err.Error(), "too many connections") {
		t.Errorf("List beyond MaxConns: %v, want 503 too many connections", err)
	}
	cancel()
	apitest.WaitFor(t, "the followers to go", func() bool { return ts.Fake.Followers() == 0 })
	apitest.WaitFor(t, "a free connection", func() bool {
		_, err := other.List(context.Background())
		return err == nil
	})
}

// TestShutdown: ending Serve's context ends the streams and exec sessions
// that are still open, and Serve returns.
func TestShutdown(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	ctx := context.Background()
	logsErr := make(chan error, 1)
	go func() {
		logsErr <- ts.Client.Logs(ctx, "web", api.LogOptions{Follow: true}, func(api.LogEntry) error { return nil })
	}()
	execErr := make(chan error, 1)
	go func() {
		_, err := ts.Client.Exec(ctx, "web", api.ExecOptions{Cmd: []string{"sleep"}}, client.ExecIO{})
		execErr <- err
	}()
	// And a client that does not read its exec's output at all: the
	// server's writes to it block.
	stalled, _ := rawExec(t, ts, `{"cmd":["flood"]}`)
	defer stalled.Close()
	apitest.WaitFor(t, "the streams and the sessions", func() bool {
		return ts.Fake.Followers() == 1 && ts.Fake.ExecsOpen() == 2
	})
	time.Sleep(100 * time.Millisecond) // the socket buffers fill
	start := time.Now()
	ts.Stop(t)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("shutdown took %v (a blocked write held it)", took)
	}
	for what, ch := range map[string]chan error{"logs": logsErr, "exec": execErr} {
		select {
		case err := <-ch:
			t.Logf("%s after shutdown: %v", what, err)
		case <-time.After(5 * time.Second):
			t.Errorf("%s still running after shutdown", what)
		}
	}
	if ts.Fake.ExecsOpen() != 0 || ts.Fake.StreamsOpen() != 0 {
		t.Errorf("after shutdown: %d sessions, %d streams open", ts.Fake.ExecsOpen(), ts.Fake.StreamsOpen())
	}
}

// TestPeerCredentials: a client that is not root is refused even if the
// socket's mode lets it connect.
func TestPeerCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a client as another user")
	}
	ts := apitest.Start(t, api.Options{})
	// Open the way for uid 65534 to connect at all.
	for d := ts.Path; d != "/" && d != os.TempDir(); d = parentDir(d) {
		os.Chmod(d, 0o755)
	}
	os.Chmod(ts.Path, 0o666)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The test binary's own directory is root's alone: run a copy.
	bin := filepath.Join(parentDir(ts.Path), "api.test")
	if out, err := exec.Command("cp", os.Args[0], bin).CombinedOutput(); err != nil {
		t.Fatalf("copy the test binary: %v\n%s", err, out)
	}
	os.Chmod(bin, 0o755)
	cmd := exec.CommandContext(ctx, bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), envDial+"="+ts.Path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as uid 65534: %v\n%s", err, out)
	}
	status, body, _ := strings.Cut(string(out), " ")
	var m api.Message
	json.Unmarshal([]byte(body), &m)
	if status != "403" || !strings.Contains(m.Message, "root only (peer uid 65534)") {
		t.Errorf("client as uid 65534 got %s", out)
	}
	// Root still gets in.
	if _, err := ts.Client.List(ctx); err != nil {
		t.Errorf("root: %v", err)
	}
}

func parentDir(p string) string {
	i := strings.LastIndex(p, "/")
	if i <= 0 {
		return "/"
	}
	return p[:i]
}
