package container

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestExecPipes(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	c := e.start(t, &manifest.Container{Name: "host", Command: []string{"sleep"}, Environment: []string{"SHARED=manifest"}}, img)
	waitLine(t, e.console, "host", "sleeping")
	ctx := context.Background()

	tests := []struct {
		name     string
		opts     ExecOptions
		code     int
		stdout   []string // lines expected in stdout, in order
		notOut   []string
		stderr   string
		startErr string
	}{
		{
			name: "environment, user and working directory",
			opts: ExecOptions{Args: []string{"/probe", "report"}, User: "app", Cwd: "/tmp", Env: []string{"EXTRA=x", "SHARED"}},
			stdout: []string{"uid=1000", "gid=1000", "cwd=/tmp", "hostname=host",
				"env=IMAGE_VAR=from-image", "env=NOTIFY_SOCKET=" + NotifySocketPath, "env=HOME=/home/app", "env=EXTRA=x",
				"CapEff=0000000000000000", "NoNewPrivs=1"},
			notOut: []string{"pid=1", "env=SHARED=manifest", "env=TERM=xterm"},
		},
		{
			name:   "the container's user: root with Docker's capabilities",
			opts:   ExecOptions{Args: []string{"/probe", "report"}},
			stdout: []string{"uid=0", "cwd=/", "env=SHARED=manifest", "env=HOME=/root", "CapEff=00000000a80425fb"},
		},
		{
			name:   "stdin copied until EOF",
			opts:   ExecOptions{Args: []string{"/probe", "stdin"}, Stdin: strings.NewReader("line 1\nline 2\n")},
			stdout: []string{"line 1", "line 2"},
		},
		{
			name:   "separate stderr",
			opts:   ExecOptions{Args: []string{"/probe", "mixed"}},
			stdout: []string{"out 1", "out 2"},
			stderr: "err\n",
		},
		{
			name: "exit code",
			opts: ExecOptions{Args: []string{"/probe", "exit", "5"}},
			code: 5,
		},
		{
			name:     "missing program",
			opts:     ExecOptions{Args: []string{"/no/such/program"}},
			startErr: "/no/such/program",
		},
		{
			name:     "unknown user",
			opts:     ExecOptions{Args: []string{"/probe", "report"}, User: "nobody-here"},
			startErr: "nobody-here",
		},
		{
			name:     "relative working directory",
			opts:     ExecOptions{Args: []string{"/probe", "report"}, Cwd: "tmp"},
			startErr: "not absolute",
		},
		{
			name:     "no program",
			opts:     ExecOptions{},
			startErr: "no program",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr lockedBuffer
			o := tt.opts
			o.Stdout, o.Stderr = &stdout, &stderr
			p, err := c.Exec(ctx, o)
			if tt.startErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.startErr) {
					t.Fatalf("Exec: %v, want an error with %q", err, tt.startErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if p.Pid() <= 0 || p.Pid() == c.Pid() {
				t.Errorf("pid %d (container's %d)", p.Pid(), c.Pid())
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			exit, err := p.Wait(wctx)
			if err != nil || exit.Code != tt.code {
				t.Fatalf("exit %v %v, want %d; stdout %q stderr %q", exit, err, tt.code, stdout.String(), stderr.String())
			}
			lines := strings.Split(stdout.String(), "\n")
			last := -1
			for _, want := range tt.stdout {
				i := slices.Index(lines, want)
				if i < 0 || i < last {
					t.Errorf("stdout lacks %q (in order):\n%s", want, stdout.String())
				}
				last = i
			}
			for _, not := range tt.notOut {
				if slices.Contains(lines, not) {
					t.Errorf("stdout has %q", not)
				}
			}
			if stderr.String() != tt.stderr {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.stderr)
			}
		})
	}

	// A signal to the process alone; not PID 1, it dies of it.
	p, err := c.Exec(ctx, ExecOptions{Args: []string{"/probe", "sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := p.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if exit, err := p.Wait(ctx); err != nil || exit.Code != 143 || exit.Signal != unix.SIGTERM {
		t.Errorf("exit after SIGTERM: %v %v", exit, err)
	}
	if err := p.Signal(unix.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("signal after the exit: %v", err)
	}
	p.Close()
	if c.Pid() == 0 {
		t.Fatal("the container stopped")
	}

	// An exec'd process ends with the container.
	p, err = c.Exec(ctx, ExecOptions{Args: []string{"/probe", "sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := c.Stop(ctx, unix.SIGKILL, time.Second); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if exit, err := p.Wait(wctx); err != nil || exit.Signal != unix.SIGKILL {
		t.Errorf("exec'd process after the container's end: %v %v", exit, err)
	}
	if _, err := c.Exec(ctx, ExecOptions{Args: []string{"/probe", "report"}}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Exec in a stopped container: %v", err)
	}
	if st := e.rt.opts.Reaper.Stats(); st.SelfWaited != 0 {
		t.Errorf("pids not released to the reaper: %+v", st)
	}
}

func TestExecTerminal(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	c := e.start(t, &manifest.Container{Name: "tty", Command: []string{"sleep"}, User: "app"}, img)
	waitLine(t, e.console, "tty", "sleeping")
	ctx := context.Background()

	if _, err := c.Exec(ctx, ExecOptions{Args: []string{"/probe", "tty"}, TTY: true, Stderr: io.Discard}); err == nil {
		t.Error("TTY with a separate stderr accepted")
	}
	p, err := c.Exec(ctx, ExecOptions{Args: []string{"/probe", "tty"}, TTY: true, Width: 80, Height: 24})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	term := p.Terminal()
	if term == nil || !strings.HasPrefix(term.Name(), "/dev/pts/") {
		t.Fatalf("terminal %v", term)
	}
	var out lockedBuffer
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(&out, term)
		copied <- err
	}()
	waitFor := func(s string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("terminal never showed %q:\n%s", s, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("isatty=true size=80x24 tty=" + term.Name() + " TERM=xterm\r\n")
	if _, err := term.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	waitFor("got hello\r\n")
	if err := p.Resize(100, 40); err != nil {
		t.Fatal(err)
	}
	if w, h, err := term.Size(); err != nil || w != 100 || h != 40 {
		t.Errorf("size %dx%d %v", w, h, err)
	}
	waitFor("resized=100x40")
	exit, err := p.Wait(ctx)
	if err != nil || exit.Code != 7 {
		t.Errorf("exit %v %v", exit, err)
	}
	select {
	case err := <-copied:
		if err != nil {
			t.Errorf("terminal read after the exit: %v, want EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("terminal output never ended")
	}

	// The caller's streams copied through the terminal.
	var out2 lockedBuffer
	p2, err := c.Exec(ctx, ExecOptions{Args: []string{"/probe", "tty"}, TTY: true, Stdin: strings.NewReader("via stdin\n"), Stdout: &out2})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out2.String(), "got via stdin") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	p2.Resize(50, 10)
	if exit, err := p2.Wait(ctx); err != nil || exit.Code != 7 || !strings.Contains(out2.String(), "resized=50x10") {
		t.Errorf("exit %v %v, output %q", exit, err, out2.String())
	}
}

func TestRun(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	c := e.start(t, &manifest.Container{Name: "checked", Command: []string{"sleep"}}, img)
	waitLine(t, e.console, "checked", "sleeping")
	ctx := context.Background()

	code, out, err := c.Run(ctx, []string{"/probe", "mixed"}, 5*time.Second)
	if err != nil || code != 0 || string(out) != "out 1\nerr\nout 2\n" {
		t.Errorf("Run mixed: %d %q %v (want stdout and stderr combined in order)", code, out, err)
	}
	code, out, err = c.Run(ctx, []string{"/probe", "out", strings.Repeat("x", 10000)}, 5*time.Second)
	if err != nil || code != 0 || len(out) != RunOutputLimit {
		t.Errorf("Run with long output: %d, %d bytes, %v", code, len(out), err)
	}
	if code, _, err = c.Run(ctx, []string{"/probe", "exit", "3"}, 0); err != nil || code != 3 {
		t.Errorf("Run exit 3: %d %v", code, err)
	}
	if _, _, err = c.Run(ctx, []string{"/nonexistent"}, time.Second); err == nil {
		t.Error("Run of a missing program: no error")
	}

	// At the timeout the process and what it started are killed.
	start := time.Now()
	code, out, err = c.Run(ctx, []string{"/probe", "fork", "3"}, 500*time.Millisecond)
	if !errors.Is(err, ErrRunTimeout) || !errors.Is(err, context.DeadlineExceeded) || code != -1 {
		t.Errorf("Run past its timeout: %d %v", code, err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Run took %v with a 500ms timeout", took)
	}
	if !strings.Contains(string(out), "started 3") {
		t.Errorf("output before the timeout: %q", out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := c.lc.Processes()
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left in the container after the timeout: %v", pids)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A cancelled context ends the run too.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(200*time.Millisecond, cancel)
	if _, _, err := c.Run(cctx, []string{"/probe", "sleep"}, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled context: %v", err)
	}
	// The process that is PID 1 in the container is the only one with
	// the watchdog (WATCHDOG_PID=1); a Run sees the variables but is not it.
	c2 := e.start(t, &manifest.Container{Name: "dog", Command: []string{"sleep"}, Watchdog: 3 * time.Second}, img)
	waitLine(t, e.console, "dog", "sleeping")
	if _, out, err := c2.Run(ctx, []string{"/probe", "watchdog"}, 5*time.Second); err != nil || !strings.Contains(string(out), "watchdog=0s") {
		t.Errorf("watchdog in an exec'd process: %q %v", out, err)
	}
}
