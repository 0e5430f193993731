package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-shellwords"

	"github.com/photon-init/photon-init/internal/safe"
)

// abandonAfter is how long a built-in command may take to stop after
// Ctrl-C before the prompt comes back without it.
const abandonAfter = 2 * time.Second

// Command is one command of the shell: a built-in, or one given in
// Options.Commands (the photonctl verbs).
type Command struct {
	// Name is what the user types.
	Name string
	// Usage is the synopsis shown by "help NAME", e.g. "ls [-l] [PATH...]".
	Usage string
	// Summary is the one line "help" shows.
	Summary string
	// Run runs the command; args[0] is its name. ctx ends on Ctrl-C. An
	// error is shown as "NAME: error" (an *ExitError only when it says
	// something).
	Run func(ctx context.Context, env *Env, args []string) error
}

// ExitError is a command's non-zero exit status; the shell shows nothing
// for it, the command has said why.
type ExitError struct{ Code int }

// Error says the exit status.
func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// errExit is what the exit command returns to end the shell.
var errExit = errors.New("exit")

// ProgramRunner starts cmd and waits for it to end, returning its exit
// code (-1 when a signal ended it). In PID 1 it must start the program
// through the reaper.
type ProgramRunner func(cmd *exec.Cmd) (exitCode int, err error)

// Options configure a Shell.
type Options struct {
	// Terminal is where the shell reads keys and writes: the console's tty
	// device, opened read-write as an *os.File (then it gets raw mode and
	// programs get it as their controlling terminal). Required.
	Terminal Terminal
	// Banner is shown when the shell starts (the reason it was started).
	Banner string
	// Log receives what the console must know: a command that panicked.
	// Nil discards.
	Log *slog.Logger
	// Commands are added to the built-in commands; one with a built-in's
	// name replaces it.
	Commands []Command
	// RunProgram runs programs that are not built-in (a name found in
	// PATH, or a path). Nil refuses to run any.
	RunProgram ProgramRunner
	// Power asks the machine to "poweroff", "reboot" or "halt". Nil leaves
	// those commands out.
	Power func(action string) error
	// ProcDir is the proc filesystem ps reads; "" means /proc.
	ProcDir string
	// MountsFile is what mount lists; "" means /proc/self/mounts.
	MountsFile string
	// Net is what ip asks; nil means the kernel, through netlink.
	Net Netlink
	// Klog reads the kernel's log buffer for dmesg; nil means syslog(2).
	Klog func() ([]byte, error)
	// Dir is the starting working directory; "" means /.
	Dir string
}

// Shell is a small interactive shell for a machine that may have no other:
// a line editor, built-in commands, and programs run on the terminal.
// Lines are split into words like a POSIX shell does (quotes and
// backslashes); there are no pipes, redirections, variables or jobs.
type Shell struct {
	opts Options
	term Terminal
	mode *ttyMode // nil when the terminal is not a tty
	ed   *Editor
	cmds map[string]Command
	log  *slog.Logger

	mu  sync.Mutex
	dir string
}

// New returns a shell on opts.Terminal.
func New(opts Options) (*Shell, error) {
	if opts.Terminal == nil {
		return nil, errors.New("shell: no terminal")
	}
	if opts.ProcDir == "" {
		opts.ProcDir = "/proc"
	}
	if opts.MountsFile == "" {
		opts.MountsFile = "/proc/self/mounts"
	}
	if opts.Net == nil {
		opts.Net = kernelNetlink{}
	}
	if opts.Klog == nil {
		opts.Klog = readKernelLog
	}
	if opts.Dir == "" {
		opts.Dir = "/"
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Shell{opts: opts, term: opts.Terminal, log: log, dir: opts.Dir, cmds: map[string]Command{}}
	s.mode = newTTYMode(opts.Terminal)
	s.ed = NewEditor(opts.Terminal, opts.Terminal, s.complete)
	if s.mode != nil {
		s.ed.newline = "\n" // raw mode keeps ONLCR
	}
	s.ed.promptFunc = s.prompt
	for _, c := range builtins(opts.Power != nil) {
		s.cmds[c.Name] = c
	}
	for _, c := range opts.Commands {
		s.cmds[c.Name] = c
	}
	return s, nil
}

// Editor returns the shell's line editor: the console hides and redraws
// the prompt through its Around and Redraw.
func (s *Shell) Editor() *Editor { return s.ed }

// Commands returns the names of the shell's commands, sorted.
func (s *Shell) Commands() []string {
	names := make([]string, 0, len(s.cmds))
	for n := range s.cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Run reads and runs commands until exit, Ctrl-D, or ctx ends; it returns
// nil for the first two. A panic in a command is reported and the prompt
// comes back. The terminal's mode is restored when Run returns.
func (s *Shell) Run(ctx context.Context) error {
	if s.mode != nil {
		if err := s.mode.raw(); err != nil {
			return err
		}
		defer s.mode.cooked()
	}
	if dl, ok := s.term.(deadliner); ok && dl.SetReadDeadline(time.Time{}) == nil {
		stop := context.AfterFunc(ctx, func() { dl.SetReadDeadline(time.Now()) })
		defer stop()
	}
	out := s.ed.Writer()
	if s.opts.Banner != "" {
		fmt.Fprintln(out, strings.TrimRight(s.opts.Banner, "\n"))
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		line, err := s.ed.ReadLine(s.prompt())
		switch {
		case errors.Is(err, ErrInterrupt):
			continue
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("shell: read terminal: %w", err)
		}
		args, err := splitWords(line)
		if err != nil {
			fmt.Fprintf(out, "%v\n", err)
			continue
		}
		if len(args) == 0 {
			continue
		}
		if err := s.runCommand(ctx, args); errors.Is(err, errExit) {
			return nil
		}
	}
}

// prompt is "HOST:DIR# ".
func (s *Shell) prompt() string {
	host, err := os.Hostname()
	if err != nil || host == "" || host == "(none)" { // (none): the kernel's, none set yet
		host = "photon"
	}
	return host + ":" + s.Dir() + "# "
}

// Dir returns the shell's working directory.
func (s *Shell) Dir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dir
}

func (s *Shell) setDir(d string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dir = d
}

// splitWords splits a command line into words. Pipes, redirections, ; and
// & are refused rather than passed on as words.
func splitWords(line string) ([]string, error) {
	p := shellwords.NewParser()
	p.ParseComment = true
	args, err := p.Parse(line)
	if err != nil {
		return nil, fmt.Errorf("cannot parse the line: %w", err)
	}
	if p.Position >= 0 {
		return nil, fmt.Errorf("%q: this shell has no pipes, redirections, ; or &", strings.TrimSpace(line[p.Position:]))
	}
	return args, nil
}

// runCommand runs one command line. It returns errExit for exit.
func (s *Shell) runCommand(ctx context.Context, args []string) error {
	out := &gateWriter{w: s.ed.Writer()}
	defer out.close()
	cmd, ok := s.cmds[args[0]]
	if !ok {
		env := &Env{Stdout: out, Stderr: out, shell: s}
		err := env.Exec(ctx, args[0], args[1:]...)
		s.report(out, args[0], err)
		return nil
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	env := &Env{Stdout: out, Stderr: out, shell: s, cancel: cancel}
	env.watch = s.watchInterrupt(cancel)
	if s.ed.takeInterrupt() {
		fmt.Fprint(s.ed.Writer(), "^C\n")
		cancel()
	}
	done := make(chan error, 1)
	go func() {
		done <- safe.Call(args[0], func() error { return cmd.Run(cctx, env, args) })
	}()
	var err error
	select {
	case err = <-done:
	case <-cctx.Done():
		select {
		case err = <-done:
		case <-time.After(abandonAfter):
			err = fmt.Errorf("still running %v after Ctrl-C: left behind, its output discarded", abandonAfter)
		}
	}
	env.finish()
	if errors.Is(err, errExit) {
		return errExit
	}
	if err != nil && strings.Contains(err.Error(), ": panic: ") {
		s.log.Error("debug shell: command panicked; the shell goes on", "command", args[0], "err", firstLine(err.Error()))
	}
	if errors.Is(err, context.Canceled) && ctx.Err() == nil {
		err = nil // Ctrl-C: "^C" is on the screen already
	}
	s.report(out, args[0], err)
	return nil
}

// report shows a command's error.
func (s *Shell) report(out *gateWriter, name string, err error) {
	var exit *ExitError
	switch {
	case err == nil, errors.As(err, &exit):
	default:
		msg := err.Error()
		if !strings.HasPrefix(msg, name+":") {
			msg = name + ": " + msg
		}
		fmt.Fprintln(s.ed.Writer(), msg)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// watcher reads the terminal while a built-in command runs: Ctrl-C cancels
// the command, other keys are kept for the next prompt.
type watcher struct {
	dl   deadliner
	done chan struct{}
}

// watchInterrupt starts a watcher; it returns nil when the terminal's
// reads cannot be cut short (then Ctrl-C cannot stop a built-in).
func (s *Shell) watchInterrupt(cancel func()) *watcher {
	dl, ok := s.term.(deadliner)
	if !ok || dl.SetReadDeadline(time.Time{}) != nil {
		return nil
	}
	w := &watcher{dl: dl, done: make(chan struct{})}
	safe.Go(s.log, "debug shell: Ctrl-C watcher", func() {
		defer close(w.done)
		buf := make([]byte, 64)
		for {
			n, err := s.term.Read(buf)
			for i := 0; i < n; i++ {
				if buf[i] == 0x03 {
					s.ed.DiscardInput()
					fmt.Fprint(s.ed.Writer(), "^C\n")
					cancel()
					continue
				}
				s.ed.Feed(buf[i : i+1])
			}
			if err != nil {
				return
			}
		}
	})
	return w
}

// stop ends the watcher and waits until it no longer reads.
func (w *watcher) stop() {
	if w == nil {
		return
	}
	w.dl.SetReadDeadline(time.Now())
	<-w.done
	w.dl.SetReadDeadline(time.Time{})
}

// gateWriter passes writes on until it is closed, then drops them: a
// command left behind after Ctrl-C must not write over the prompt.
type gateWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

// Write writes p unless the gate is closed.
func (g *gateWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return len(p), nil
	}
	return g.w.Write(p)
}

func (g *gateWriter) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}

// Env is what a command gets from the shell.
type Env struct {
	// Stdout and Stderr write to the terminal.
	Stdout, Stderr io.Writer

	shell  *Shell
	cancel func()

	mu       sync.Mutex
	watch    *watcher
	finished bool // the shell has moved on: no more watching or programs
}

// Dir returns the shell's working directory.
func (e *Env) Dir() string { return e.shell.Dir() }

// Path resolves p against the working directory.
func (e *Env) Path(p string) string {
	if p == "" {
		return e.Dir()
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(e.Dir(), p)
}

// IsTerminal reports whether the shell runs on a tty (programs then get
// it as their controlling terminal; photonctl exec may ask for a TTY).
func (e *Env) IsTerminal() bool { return e.shell.mode != nil }

// stopWatching ends the Ctrl-C watcher, if any. It reports false when the
// command is finished (or left behind) and must not use the terminal.
func (e *Env) stopWatching() bool {
	e.mu.Lock()
	w, finished := e.watch, e.finished
	e.watch = nil
	e.mu.Unlock()
	w.stop()
	return !finished
}

// resumeWatching starts the Ctrl-C watcher again after a program ended.
func (e *Env) resumeWatching() {
	if e.cancel == nil {
		return
	}
	w := e.shell.watchInterrupt(e.cancel)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.finished {
		w.stop()
		return
	}
	e.watch = w
}

// finish ends the command's use of the terminal.
func (e *Env) finish() {
	e.mu.Lock()
	e.finished = true
	e.mu.Unlock()
	e.stopWatching()
}

// Exec runs a program on the terminal and waits for it: name is looked up
// in PATH unless it holds a slash. The program gets the terminal in cooked
// mode as its controlling terminal, in a session of its own, so that
// Ctrl-C reaches it and not PID 1; the shell takes the terminal back when
// it ends. A non-zero exit is an *ExitError.
func (e *Env) Exec(ctx context.Context, name string, args ...string) error {
	s := e.shell
	if s.opts.RunProgram == nil {
		return fmt.Errorf("command not found (and this shell runs no programs)")
	}
	path := name
	if !strings.Contains(name, "/") {
		p, err := exec.LookPath(name)
		if err != nil {
			return errors.New("command not found; \"help\" lists the built-in commands")
		}
		path = p
	} else {
		path = e.Path(name)
	}
	cmd := exec.Command(path, args...)
	cmd.Args[0] = name
	return e.ExecCmd(ctx, cmd)
}

// ExecCmd is Exec for a prepared command: its Stdin, Stdout, Stderr and
// SysProcAttr are set here, and Dir when empty.
func (e *Env) ExecCmd(ctx context.Context, cmd *exec.Cmd) error {
	s := e.shell
	if s.opts.RunProgram == nil {
		return errors.New("this shell runs no programs")
	}
	if cmd.Dir == "" {
		cmd.Dir = e.Dir()
	}
	// The program reads the terminal now: the Ctrl-C watcher must not.
	if !e.stopWatching() {
		return errors.New("the shell has moved on; not starting a program")
	}
	defer e.resumeWatching()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var code int
	var err error
	if f, ok := s.term.(*os.File); ok && s.mode != nil {
		code, err = relayProgram(f, s.mode.saved, s.ed.Writer(), s.ed.takeInput(), cmd, s.opts.RunProgram)
	} else {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, e.Stdout, e.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		code, err = s.opts.RunProgram(cmd)
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}
