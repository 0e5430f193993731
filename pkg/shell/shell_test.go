package shell_test

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/shell"
	"github.com/photon-init/photon-init/pkg/shell/shelltest"
)

// run is a shell's Run in the background.
type run struct {
	done chan struct{} // closed when Run returned
	err  error
}

// wait returns Run's result, or fails the test after 5 seconds.
func (r *run) wait(t *testing.T, what string) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not end the shell", what)
		return nil
	}
}

// startShell runs a shell on a fresh pseudo-terminal; it ends with the
// test.
func startShell(t *testing.T, opts shell.Options) (*shelltest.PTY, *shell.Shell, *run) {
	t.Helper()
	pty := shelltest.Open(t)
	opts.Terminal = pty.Slave
	s, err := shell.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		r.wait(t, "the end of the test")
	})
	return pty, s, r
}

func TestShellOnATerminal(t *testing.T) {
	var logBuf strings.Builder
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logBuf.Write(p)
	}), nil))
	boom := shell.Command{Name: "boom", Summary: "panics", Run: func(context.Context, *shell.Env, []string) error {
		var m map[string]int
		m["x"]++ // a nil map write: a runtime panic
		return nil
	}}
	stuck := shell.Command{Name: "stuck", Summary: "ignores Ctrl-C", Run: func(context.Context, *shell.Env, []string) error {
		time.Sleep(10 * time.Second)
		return nil
	}}
	pty, s, done := startShell(t, shell.Options{Banner: "photon-init debug shell: test", Log: log,
		Commands: []shell.Command{boom, stuck}, RunProgram: shelltest.RunProgram, Dir: "/"})
	pty.WaitFor(t, "photon-init debug shell: test\r\n")
	pty.WaitFor(t, ":/# ")

	t.Run("echo and raw mode", func(t *testing.T) {
		pty.Type(t, "echo hello\r")
		// The editor echoes; the line discipline does not (no doubled
		// characters), and output gets CR LF.
		pty.WaitFor(t, "echo hello\r\nhello\r\n")
		pty.WaitFor(t, ":/# ")
	})
	t.Run("CR LF from the terminal is one line", func(t *testing.T) {
		pty.Type(t, "echo one\r\necho two\r\n")
		screen := pty.WaitFor(t, "two\r\n")
		if strings.Count(screen, "# ") != 1 {
			t.Errorf("an empty line came between: %q", screen)
		}
	})
	t.Run("a panic is reported and the prompt returns", func(t *testing.T) {
		pty.Type(t, "boom\r")
		pty.WaitFor(t, "boom: panic: assignment to entry in nil map")
		pty.WaitFor(t, ":/# ")
		pty.Type(t, "echo alive\r")
		pty.WaitFor(t, "alive\r\n")
		logMu.Lock()
		defer logMu.Unlock()
		if !strings.Contains(logBuf.String(), "command panicked") {
			t.Errorf("the panic was not logged: %q", logBuf.String())
		}
	})
	t.Run("Ctrl-C stops a built-in", func(t *testing.T) {
		start := time.Now()
		pty.Type(t, "sleep 30\r")
		pty.WaitFor(t, "sleep 30\r\n")
		time.Sleep(100 * time.Millisecond)
		pty.Type(t, "\x03")
		pty.WaitFor(t, "^C\r\n")
		pty.WaitFor(t, ":/# ")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Ctrl-C took %v", d)
		}
	})
	t.Run("a Ctrl-C typed right behind the command stops it", func(t *testing.T) {
		start := time.Now()
		pty.Paste(t, "sleep 30\r\x03")
		pty.WaitFor(t, "sleep 30\r\n^C\r\n")
		pty.WaitFor(t, ":/# ")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Ctrl-C took %v", d)
		}
	})
	t.Run("type-ahead goes to the program that reads next", func(t *testing.T) {
		pty.Paste(t, "sh -c 'read x; echo got-$x'\rtyped-ahead\r")
		pty.WaitFor(t, "got-typed-ahead\r\n")
		pty.WaitFor(t, ":/# ")
	})
	t.Run("type-ahead during a command is kept", func(t *testing.T) {
		pty.Type(t, "sleep 0.3\r")
		pty.WaitFor(t, "sleep 0.3\r\n")
		pty.Type(t, "echo ahead\r")
		pty.WaitFor(t, "ahead\r\n")
	})
	t.Run("a command that ignores Ctrl-C is left behind", func(t *testing.T) {
		pty.Type(t, "stuck\r")
		pty.WaitFor(t, "stuck\r\n")
		time.Sleep(100 * time.Millisecond)
		pty.Type(t, "\x03")
		pty.WaitFor(t, "stuck: still running 2s after Ctrl-C")
		pty.WaitFor(t, ":/# ")
	})
	t.Run("a program owns the terminal", func(t *testing.T) {
		// The program's stdin is the terminal, a tty; what is typed
		// reaches it and not the shell; its session's controlling
		// terminal is the shell's terminal.
		pty.Type(t, `sh -c 'test -t 0 && echo tty-yes; read x; echo got-$x; ps -o sid=,tty= -p $$ | grep -q pts && echo ctty-yes; exit 4'`+"\r")
		pty.WaitFor(t, "tty-yes\r\n")
		pty.Type(t, "abc\r")
		pty.WaitFor(t, "got-abc\r\n")
		pty.WaitFor(t, "ctty-yes\r\n")
		screen := pty.WaitFor(t, ":/# ")
		if strings.Contains(screen, "exit status") {
			t.Errorf("an exit status was shown: %q", screen)
		}
		// Raw mode is back: one byte at a time, no echo by the tty.
		pty.Type(t, "echo raw-again\r")
		pty.WaitFor(t, "echo raw-again\r\nraw-again\r\n")
	})
	t.Run("Ctrl-C goes to the program, not to the shell", func(t *testing.T) {
		pty.Type(t, "sh -c 'trap \"echo trapped; exit 0\" INT; echo waiting; while :; do sleep 0.1; done'\r")
		pty.WaitFor(t, "waiting\r\n")
		pty.Type(t, "\x03")
		pty.WaitFor(t, "trapped\r\n")
		pty.WaitFor(t, ":/# ")
	})
	t.Run("history", func(t *testing.T) {
		pty.Type(t, "\x1b[A\x1b[A\r") // two up: "echo raw-again"
		pty.WaitFor(t, "raw-again\r\n")
	})
	t.Run("the console writes around the prompt", func(t *testing.T) {
		pty.WaitFor(t, ":/# ")
		pty.Type(t, "ech")
		pty.WaitFor(t, "ech")
		s.Editor().Around(func() { pty.Slave.Write([]byte("[ 9.9] photon-init: a message\n")) })
		pty.WaitFor(t, "\r\x1b[K[ 9.9] photon-init: a message\r\n")
		pty.WaitFor(t, ":/# ech\x1b[K")
		pty.Type(t, "o redrawn\r")
		pty.WaitFor(t, "redrawn\r\n")
	})
	t.Run("exit", func(t *testing.T) {
		pty.Type(t, "exit\r")
		if err := done.wait(t, "exit"); err != nil {
			t.Errorf("Run: %v", err)
		}
		// The terminal is back in cooked mode.
		tio, err := unix.IoctlGetTermios(int(pty.Slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if tio.Lflag&unix.ICANON == 0 || tio.Lflag&unix.ECHO == 0 || tio.Lflag&unix.ISIG == 0 {
			t.Errorf("terminal not restored: lflag %#x", tio.Lflag)
		}
	})
}

func TestShellCtrlDAndContext(t *testing.T) {
	pty, _, done := startShell(t, shell.Options{})
	pty.WaitFor(t, "# ")
	pty.Type(t, "\x04")
	if err := done.wait(t, "Ctrl-D"); err != nil {
		t.Errorf("Ctrl-D: Run = %v", err)
	}

	pty2 := shelltest.Open(t)
	s, err := shell.New(shell.Options{Terminal: pty2.Slave})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = s.Run(ctx)
	}()
	pty2.WaitFor(t, "# ")
	cancel()
	if err := r.wait(t, "cancel"); !errors.Is(err, context.Canceled) {
		t.Errorf("Run after cancel = %v", err)
	}
}

func TestNewNeedsATerminal(t *testing.T) {
	if _, err := shell.New(shell.Options{}); err == nil {
		t.Error("New without a terminal succeeded")
	}
}

func TestRunOnTerminal(t *testing.T) {
	pty := shelltest.Open(t)
	code, err := shell.RunOnTerminal(pty.Slave, exec.Command("sh", "-c", "test -t 1 && echo on-tty; exit 7"), shelltest.RunProgram)
	if err != nil || code != 7 {
		t.Errorf("RunOnTerminal = %d, %v; want 7", code, err)
	}
	pty.WaitFor(t, "on-tty\r\n")
	if _, err := shell.RunOnTerminal(nil, exec.Command("true"), shelltest.RunProgram); err == nil {
		t.Error("RunOnTerminal without a terminal succeeded")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
