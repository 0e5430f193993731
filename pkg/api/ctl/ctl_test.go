package ctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/api/ctl"
	"github.com/photon-init/photon-init/pkg/api/internal/apitest"
	"github.com/photon-init/photon-init/pkg/api/internal/tty"
)

// envAsPhotonctl makes the test binary run photonctl with its arguments
// (for the completion script, which runs "photonctl ps -q").
const envAsPhotonctl = "PHOTONCTL_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envAsPhotonctl) != "" {
		os.Exit(ctl.Run(context.Background(), ctl.Env{Stdout: os.Stdout, Stderr: os.Stderr}, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// now is the clock of every test: the fake's containers started at noon.
var now = time.Date(2025, 3, 1, 12, 5, 0, 0, time.UTC)

type result struct {
	code           int
	stdout, stderr string
}

// photonctl runs the verbs with env's streams captured; $PHOTON_SOCKET is
// the server's socket.
func photonctl(t *testing.T, ts *apitest.Server, stdin io.Reader, args ...string) result {
	t.Helper()
	return photonctlCtx(context.Background(), t, ts, stdin, args...)
}

func photonctlCtx(ctx context.Context, t *testing.T, ts *apitest.Server, stdin io.Reader, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := ctl.Run(ctx, ctl.Env{
		Version: "9.9",
		Stdin:   stdin,
		Stdout:  &out,
		Stderr:  &errOut,
		Getenv: func(k string) string {
			if k == api.SocketEnv && ts != nil {
				return ts.Path
			}
			return ""
		},
		Now: func() time.Time { return now },
	}, args)
	return result{code, out.String(), errOut.String()}
}

func (r result) check(t *testing.T, code int, stdout, stderr string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d (stdout %q, stderr %q)", r.code, code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, stdout) {
		t.Errorf("stdout %q, want it to contain %q", r.stdout, stdout)
	}
	if !strings.Contains(r.stderr, stderr) {
		t.Errorf("stderr %q, want it to contain %q", r.stderr, stderr)
	}
}

func TestUsage(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{nil, 2, "", "usage: photonctl"},
		{[]string{"frobnicate"}, 2, "", `unknown verb "frobnicate"`},
		{[]string{"--bogus", "ps"}, 2, "", "unknown flag: --bogus"},
		{[]string{"help"}, 0, "exec NAME CMD [ARG...]", ""},
		{[]string{"-h"}, 0, "verbs:", ""},
		{[]string{"help", "logs"}, 0, "--follow", ""},
		{[]string{"help", "nope"}, 2, "", `unknown verb "nope"`},
		{[]string{"logs", "-h"}, 0, "usage: photonctl logs", ""},
		{[]string{"ps", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"logs"}, 2, "", "logs: needs NAME"},
		{[]string{"logs", "a", "b"}, 2, "", `unexpected argument "b"`},
		{[]string{"logs", "--tail", "x", "web"}, 2, "", "--tail"},
		{[]string{"logs", "--since", "last week", "web"}, 2, "", "--since"},
		{[]string{"exec", "web"}, 2, "", "exec: needs NAME CMD"},
		{[]string{"exec", "-e", "NOEQ", "web", "echo"}, 2, "", "not KEY=VALUE"},
		{[]string{"kill", "-s", "BOGUS", "web"}, 2, "", `unknown signal "BOGUS"`},
		{[]string{"stop", "-t", "soon", "web"}, 2, "", "--timeout"},
		{[]string{"-o", "yaml", "ps"}, 2, "", `unknown format "yaml"`},
		{[]string{"completion", "zsh"}, 2, "", "only bash"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			photonctl(t, ts, nil, tc.args...).check(t, tc.code, tc.stdout, tc.stderr)
		})
	}
}

func TestPs(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	r := photonctl(t, ts, nil, "ps")
	want := "" +
		"NAME  STATE    PID  RESTARTS  IMAGE         PORTS         STATUS\n" +
		"db    exited   -    0         demo/db:2     -             exit 1, 4m ago\n" +
		"web   running  42   2         demo/web:1.0  8080->80/tcp  up 5m (healthy)\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("ps: exit %d\n%s\nwant\n%s", r.code, r.stdout, want)
	}
	photonctl(t, ts, nil, "ps", "-q").check(t, 0, "db\nweb\n", "")

	r = photonctl(t, ts, nil, "ps", "-o", "json")
	var list []api.ContainerInfo
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || r.code != 0 {
		t.Fatalf("ps -o json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if len(list) != 2 || list[1].Name != "web" || list[1].Ports[0].HostPort != 8080 || list[1].Health.Status != "healthy" {
		t.Errorf("ps -o json: %+v", list)
	}
	// The global flag may come before the verb too.
	r2 := photonctl(t, ts, nil, "-o", "json", "ps")
	if r2.stdout != r.stdout {
		t.Errorf("-o json ps differs from ps -o json")
	}
}

func TestInspect(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	r := photonctl(t, ts, nil, "inspect", "web")
	for _, want := range []string{
		"name:      web\n",
		"state:     running (started, pid 42)\n",
		"image:     demo/web:1.0 (sha256:0123456789abcdef",
		"started:   2025-03-01T12:00:00Z (5m ago)\n",
		"restarts:  2\n",
		"last exit: exit 137 (SIGKILL)\n",
		"health:    healthy\n",
		"addresses: 10.88.0.2/16\n",
		"ports:     8080->80/tcp\n",
		"file:      /etc/photon/containers/web.yaml\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect web lacks %q:\n%s", want, r.stdout)
		}
	}
	r = photonctl(t, ts, nil, "inspect", "-o", "json", "web", "db")
	var infos []api.ContainerInfo
	if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil || len(infos) != 2 || infos[1].Name != "db" {
		t.Errorf("inspect -o json web db: %v\n%s", err, r.stdout)
	}
	// An unknown name fails the command, the known ones are still shown.
	r = photonctl(t, ts, nil, "inspect", "web", "nope")
	r.check(t, 1, "name:      web", `no container named "nope"`)
}

func TestLogs(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	photonctl(t, ts, nil, "logs", "web").check(t, 0, "line 0\nline 2\nline 4\n", "line 1\nline 3\n")
	r := photonctl(t, ts, nil, "logs", "--tail", "2", "web")
	if r.stdout != "line 4\n" || r.stderr != "line 3\n" {
		t.Errorf("--tail 2: %+v", r)
	}
	// The fake's lines are a second apart from noon on; now is 12:05.
	r = photonctl(t, ts, nil, "logs", "--since", "2025-03-01T12:00:03Z", "-t", "web")
	if r.stdout != "2025-03-01T12:00:04Z line 4\n" || r.stderr != "2025-03-01T12:00:03Z line 3\n" {
		t.Errorf("--since -t: %+v", r)
	}
	if r := photonctl(t, ts, nil, "logs", "--since", "1m", "web"); r.stdout != "" || r.stderr != "" {
		t.Errorf("--since 1m: %+v", r)
	}
	r = photonctl(t, ts, nil, "logs", "-o", "json", "--tail", "1", "web")
	var e api.LogEntry
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.Line != "line 4" || e.Stream != "stdout" {
		t.Errorf("logs -o json: %v %q", err, r.stdout)
	}
	photonctl(t, ts, nil, "logs", "nope").check(t, 1, "", `photonctl: no container named "nope"`)

	// -f: the new lines, until interrupted (exit 0).
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	out := &apitest.Buffer{}
	go func() {
		code := ctl.Run(ctx, ctl.Env{Stdout: out, Stderr: io.Discard, Getenv: func(string) string { return ts.Path }}, []string{"logs", "-f", "--tail", "0", "web"})
		done <- result{code: code}
	}()
	apitest.WaitFor(t, "the follower", func() bool { return ts.Fake.Followers() == 1 })
	ts.Fake.Emit("web", "fresh")
	apitest.WaitFor(t, "the new line", func() bool { return out.String() == "fresh\n" })
	cancel()
	if r := <-done; r.code != 0 {
		t.Errorf("logs -f interrupted: exit %d", r.code)
	}
}

func TestActions(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	photonctl(t, ts, nil, "start", "db").check(t, 0, "db\n", "")
	photonctl(t, ts, nil, "start", "web").check(t, 1, "", "photonctl: web: container web is already running: conflict")
	photonctl(t, ts, nil, "stop", "-t", "3", "db", "nope").check(t, 1, "db\n", `photonctl: nope: no container named "nope"`)
	if got := ts.Fake.Stopped(); len(got) != 1 || got[0] != "db 3s" {
		t.Errorf("stops %q", got)
	}
	photonctl(t, ts, nil, "restart", "db").check(t, 0, "db\n", "")
	photonctl(t, ts, nil, "kill", "-s", "HUP", "web").check(t, 0, "web\n", "")
	photonctl(t, ts, nil, "kill", "web").check(t, 0, "web\n", "")
	photonctl(t, ts, nil, "kill", "--signal=RTMIN+3", "web").check(t, 0, "web\n", "")
	if got := strings.Join(ts.Fake.Killed(), ","); got != "web SIGHUP,web SIGKILL,web 37" {
		t.Errorf("kills %q", got)
	}
	if r := photonctl(t, ts, nil, "-o", "json", "start", "db"); r.stdout != "" {
		t.Errorf("start -o json printed %q", r.stdout)
	}
}

func TestExec(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	// The command's exit code is photonctl's (echo exits with its number
	// of input lines); stdout and stderr stay apart.
	r := photonctl(t, ts, strings.NewReader("a\nb\n"), "exec", "-i", "web", "echo")
	if r.code != 2 || r.stdout != "out: a\nout: b\nbye\n" || r.stderr != "err: a\nerr: b\n" {
		t.Errorf("exec -i web echo: %+v", r)
	}
	// Without -i the command's input is empty.
	photonctl(t, ts, strings.NewReader("ignored\n"), "exec", "web", "echo").check(t, 0, "bye\n", "")
	// Flags after NAME belong to the command.
	photonctl(t, ts, nil, "exec", "web", "nosuch", "-i").check(t, 125, "", "nosuch: no such program")
	photonctl(t, ts, nil, "exec", "db", "echo").check(t, 125, "", "container db is not running")
	photonctl(t, ts, nil, "exec", "nope", "echo").check(t, 125, "", `no container named "nope"`)

	// -it with input that is not a terminal: no raw mode, the TTY's
	// output as it comes.
	r = photonctl(t, ts, strings.NewReader("hi\nexit 4\n"), "exec", "-it", "web", "shell")
	if r.code != 4 || !strings.Contains(r.stdout, "you said: hi\r\n") {
		t.Errorf("exec -it with a pipe: %+v", r)
	}
}

// TestExecTerminal runs exec -it on a real terminal: photonctl puts it in
// raw mode for the session (so Enter arrives as \r and the remote terminal
// does the line editing), passes its size, and restores it afterwards.
func TestExecTerminal(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	master, slave, err := tty.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer slave.Close()
	if err := tty.SetSize(slave, api.TermSize{Height: 33, Width: 77}); err != nil {
		t.Fatal(err)
	}
	before := termios(t, slave)
	if before.Lflag&unix.ICANON == 0 {
		t.Fatal("a new terminal is not in canonical mode")
	}
	// What photonctl writes to the terminal.
	screen := &apitest.Buffer{}
	go io.Copy(screen, master)

	done := make(chan int, 1)
	go func() {
		code := ctl.Run(context.Background(), ctl.Env{Stdin: slave, Stdout: slave, Stderr: slave, Getenv: func(string) string { return ts.Path }},
			[]string{"exec", "-it", "web", "shell"})
		done <- code
	}()
	apitest.WaitFor(t, "the prompt", func() bool { return strings.Contains(screen.String(), "$ ") })
	if termios(t, slave).Lflag&unix.ICANON != 0 {
		t.Error("the terminal is not raw during exec -it")
	}
	io.WriteString(master, "size\r")
	apitest.WaitFor(t, "the size", func() bool { return strings.Contains(screen.String(), "size 33x77\r\n") })
	io.WriteString(master, "exit 5\r")
	select {
	case code := <-done:
		if code != 5 {
			t.Errorf("exit %d, want 5", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("exec -it did not end")
	}
	after := termios(t, slave)
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Errorf("terminal not restored: lflag %#x → %#x", before.Lflag, after.Lflag)
	}
}

func termios(t *testing.T, f *os.File) unix.Termios {
	t.Helper()
	tio, err := tty.Termios(f)
	if err != nil {
		t.Fatal(err)
	}
	return *tio
}

func TestEvents(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	ts.Client.Stop(context.Background(), "web", api.StopOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	out := &apitest.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- ctl.Run(ctx, ctl.Env{Stdout: out, Getenv: func(string) string { return ts.Path }}, []string{"events", "--since", "2000-01-01T00:00:00Z"})
	}()
	apitest.WaitFor(t, "the remembered event", func() bool { return strings.Contains(out.String(), " web running -> stopped: asked\n") })
	ts.Client.Start(context.Background(), "web")
	apitest.WaitFor(t, "the new event", func() bool { return strings.Contains(out.String(), " web stopped -> running: asked\n") })
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("events interrupted: exit %d", code)
	}

	// -o json: one object a line.
	ctx, cancel = context.WithCancel(context.Background())
	out = &apitest.Buffer{}
	go func() {
		done <- ctl.Run(ctx, ctl.Env{Stdout: out, Getenv: func(string) string { return ts.Path }}, []string{"events", "-o", "json", "--since", "1h"})
	}()
	// The fake's events carry the wall clock; --since 1h from now is
	// before them.
	apitest.WaitFor(t, "the JSON events", func() bool { return strings.Count(out.String(), "\n") == 2 })
	cancel()
	<-done
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var e api.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Container != "web" {
			t.Errorf("events -o json line %q: %v", line, err)
		}
	}
}

func TestTimelineAndPower(t *testing.T) {
	m := &apitest.Machine{}
	ts := apitest.Start(t, api.Options{Machine: m})
	want := "" +
		"STEP         START   END     DURATION  STATUS\n" +
		"early/mount  0.420s  0.431s  11.0ms    ok\n" +
		"net/network  0.440s  0.700s  260.0ms   FAILED: dhcp: no lease\n" +
		"PID 1 started 0.412s after the kernel; boot complete at 0.900s (0.488s after PID 1)\n"
	if r := photonctl(t, ts, nil, "timeline"); r.code != 0 || r.stdout != want {
		t.Errorf("timeline: exit %d\n%s\nwant\n%s", r.code, r.stdout, want)
	}
	r := photonctl(t, ts, nil, "timeline", "-o", "json")
	if !strings.Contains(r.stdout, `"pid1_start_ns": 412000000`) {
		t.Errorf("timeline -o json: %s", r.stdout)
	}
	photonctl(t, ts, nil, "reboot").check(t, 0, "reboot requested\n", "")
	photonctl(t, ts, nil, "poweroff", "-o", "json").check(t, 0, `"message": "poweroff requested"`, "")
	photonctl(t, ts, nil, "halt").check(t, 0, "halt requested\n", "")
	if got := fmt.Sprint(m.Actions()); got != "[reboot poweroff halt]" {
		t.Errorf("power requests %s", got)
	}
	// "photon-init run" has no machine.
	bare := apitest.Start(t, api.Options{})
	photonctl(t, bare, nil, "reboot").check(t, 1, "", "no power requests")
}

func TestVersionAndSocket(t *testing.T) {
	ts := apitest.Start(t, api.Options{})
	photonctl(t, ts, nil, "version").check(t, 0, "photonctl 9.9\nserver: photon-init 1.2.3-test (API v1, go", "")
	r := photonctl(t, ts, nil, "version", "-o", "json")
	var v struct {
		Client string
		Server api.VersionInfo
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Client != "9.9" || v.Server.Version != "1.2.3-test" {
		t.Errorf("version -o json: %v %s", err, r.stdout)
	}
	// No server: the client's version, then the failure.
	missing := filepath.Join(t.TempDir(), "none.sock")
	r = photonctl(t, ts, nil, "--socket", missing, "version")
	r.check(t, 1, "photonctl 9.9\n", "cannot reach photon-init at "+missing)
	if strings.Contains(r.stdout, "server:") {
		t.Errorf("version without a server printed %q", r.stdout)
	}
	// --socket wins over $PHOTON_SOCKET, before or after the verb.
	photonctl(t, ts, nil, "ps", "--socket", missing).check(t, 1, "", "no such file or directory")
	photonctl(t, nil, nil, "--socket", ts.Path, "ps", "-q").check(t, 0, "db\nweb\n", "")
	// Without either, the default socket.
	if r := photonctl(t, nil, nil, "ps"); !strings.Contains(r.stderr, api.DefaultSocket) && r.code != 0 {
		t.Errorf("default socket: %+v", r)
	}
}

// TestCompletion sources the bash completion script and completes command
// lines, container names coming from "photonctl ps -q" on the socket.
func TestCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	ts := apitest.Start(t, api.Options{})
	r := photonctl(t, ts, nil, "completion", "bash")
	if r.code != 0 || r.stdout != ctl.BashCompletion() || !strings.Contains(r.stdout, "complete -F _photonctl photonctl") {
		t.Fatalf("completion bash: %+v", r)
	}
	script := filepath.Join(t.TempDir(), "photonctl.bash")
	os.WriteFile(script, []byte(r.stdout), 0o644)
	for _, tc := range []struct {
		line string // the words so far; the last is completed
		want string
	}{
		{"photonctl ", "ps inspect logs exec start stop restart kill events timeline poweroff reboot halt version completion help"},
		{"photonctl re", "restart reboot"},
		{"photonctl logs ", "db web"},
		{"photonctl logs w", "web"},
		{"photonctl logs web ", ""},
		{"photonctl logs --tail 5 ", "db web"},
		{"photonctl logs -", "--socket --output -o --help -h --follow -f --tail --since --timestamps -t"},
		{"photonctl stop db ", "db web"},
		{"photonctl stop -t 5 ", "db web"},
		{"photonctl kill -s ", "HUP INT QUIT KILL USR1 USR2 TERM CONT STOP WINCH PWR"},
		{"photonctl kill -s T", "TERM"},
		{"photonctl -o ", "table json"},
		{"photonctl ps -o j", "json"},
		{"photonctl exec -it ", "db web"},
		{"photonctl exec -e A=1 w", "web"},
		{"photonctl exec web ", ""},
		{"photonctl exec web ls -", ""},
		{"photonctl help ti", "timeline"},
		{"photonctl completion ", "bash"},
		{"photonctl --socket " + ts.Path + " inspect ", "db web"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			words := strings.Split(tc.line, " ")
			words[0] = os.Args[0]
			var quoted []string
			for _, w := range words {
				quoted = append(quoted, "'"+w+"'")
			}
			prog := fmt.Sprintf(`source %q; COMP_WORDS=(%s); COMP_CWORD=%d; _photonctl; echo "${COMPREPLY[*]}"`,
				script, strings.Join(quoted, " "), len(words)-1)
			cmd := exec.Command(bash, "--norc", "--noprofile", "-c", prog)
			cmd.Env = append(os.Environ(), envAsPhotonctl+"=1", api.SocketEnv+"="+ts.Path)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tc.want {
				t.Errorf("completions %q, want %q", got, tc.want)
			}
		})
	}
}
