package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
)

// RunOutputLimit is how much of a Run's combined output is kept: the
// first 4 KiB, as Docker keeps of a health check's output.
const RunOutputLimit = 4096

// ErrRunTimeout is returned (wrapped, together with
// context.DeadlineExceeded) by Run when the process did not end within its
// timeout.
var ErrRunTimeout = errors.New("timed out")

// ExecOptions describe a process started in a running container by Exec.
type ExecOptions struct {
	// Args is the program and its arguments (required). A program
	// without "/" is looked up in the process's PATH.
	Args []string
	// Env is applied over the container's environment: KEY=VALUE sets
	// or replaces, KEY alone removes. With TTY, TERM=xterm is set unless
	// the container or Env set TERM.
	Env []string
	// Cwd is the working directory (absolute); "" is the container's.
	Cwd string
	// User is "uid", "uid:gid", "name" or "name:group", resolved in the
	// image's /etc/passwd and /etc/group; "" is the container's user.
	// Another user's HOME is set from its passwd entry unless Env sets
	// HOME. Capabilities are the container's, effective only for root
	// (as for the container's own process).
	User string

	// TTY gives the process a new terminal (a pty of the container's
	// /dev/pts) as stdin, stdout and stderr; ExecProcess.Terminal is its
	// master, of initial size Width × Height characters (0: the
	// kernel's default).
	TTY           bool
	Width, Height uint16

	// Stdin is copied to the process's stdin until it ends (EOF closes
	// the process's stdin) or the process exits; nil gives /dev/null.
	// With TTY it is copied to the terminal instead. A Read of Stdin in
	// progress when the process exits is not interrupted: the copy ends
	// when it returns (close the reader to end it).
	Stdin io.Reader
	// Stdout and Stderr receive the process's output; nil discards it.
	// The same writer for both gets the combined output in order (one
	// pipe). With TTY, Stdout receives the terminal's output (do not
	// read Terminal then) and Stderr must be nil.
	Stdout, Stderr io.Writer
}

// ExecProcess is a process started by Exec.
type ExecProcess struct {
	c    *Container
	sp   *startedProcess
	done chan struct{}
	exit Exit
	err  error
	// ttyOut is closed when the terminal's output is copied to Stdout.
	ttyOut chan struct{}
}

// Exec starts a process in the running container: it joins the
// container's namespaces and cgroup (libcontainer's setns process, with
// the container's capabilities, no_new_privileges, rlimits and seccomp
// profile) and is created through the reaper like the container's own.
// It returns once the program runs; a program that cannot be found or
// started is an error here. The process ends at the latest with the
// container's first process. Call Close when done with it.
func (c *Container) Exec(ctx context.Context, o ExecOptions) (*ExecProcess, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fail := func(err error) (*ExecProcess, error) {
		return nil, fmt.Errorf("exec in container %s: %w", c.name, err)
	}
	if len(o.Args) == 0 || o.Args[0] == "" {
		return fail(errors.New("no program"))
	}
	if o.TTY && o.Stderr != nil {
		return fail(errors.New("a process with a terminal has no separate stderr"))
	}
	c.mu.Lock()
	running := c.state == stateRunning
	c.mu.Unlock()
	if !running {
		return fail(ErrNotRunning)
	}
	p, err := newProcess(c.spec.Process)
	if err != nil {
		return fail(err)
	}
	p.Args = o.Args
	if o.Cwd != "" {
		if !path.IsAbs(o.Cwd) {
			return fail(fmt.Errorf("working directory %q is not absolute", o.Cwd))
		}
		p.Cwd = path.Clean(o.Cwd)
	}
	env := slices.Clone(c.spec.Process.Env)
	if o.User != "" {
		u, err := execUser(c.l.rootfs, o.User)
		if err != nil {
			return fail(err)
		}
		pu := processUser(u)
		p.UID, p.GID, p.AdditionalGroups = int(pu.UID), int(pu.GID), nil
		for _, g := range pu.AdditionalGids {
			p.AdditionalGroups = append(p.AdditionalGroups, int(g))
		}
		if caps := c.spec.Process.Capabilities; caps != nil {
			lc := linuxCapabilities(caps.Bounding, pu.UID)
			p.Capabilities.Bounding, p.Capabilities.Permitted, p.Capabilities.Effective = lc.Bounding, lc.Permitted, lc.Effective
		}
		env = mergeEnv(env, []string{"HOME=" + u.Home})
	}
	if _, ok := lookupEnv(env, "TERM"); o.TTY && !ok {
		env = append(env, "TERM=xterm")
	}
	p.Env = mergeEnv(env, o.Env)

	pio := procIO{tty: o.TTY, width: o.Width, height: o.Height}
	if !o.TTY {
		pio.stdin, pio.stdout, pio.stderr = o.Stdin, o.Stdout, o.Stderr
	}
	sp, err := c.startProcess(p, pio)
	if err != nil {
		return fail(err)
	}
	e := &ExecProcess{c: c, sp: sp, done: make(chan struct{})}
	if o.TTY {
		e.copyTerminal(o.Stdin, o.Stdout)
	}
	safe.Go(c.rt.log, "container "+c.name+" exec wait", e.waitExit)
	c.rt.log.Debug("container: exec", "container", c.name, "pid", sp.pid, "args", o.Args, "tty", o.TTY)
	return e, nil
}

// copyTerminal moves the caller's streams through the terminal.
func (e *ExecProcess) copyTerminal(in io.Reader, out io.Writer) {
	log, name := e.c.rt.log, "container "+e.c.name
	if in != nil {
		safe.Go(log, name+" terminal input", func() { _, _ = io.Copy(e.sp.term, in) })
	}
	if out != nil {
		e.ttyOut = make(chan struct{})
		safe.Go(log, name+" terminal output", func() {
			defer close(e.ttyOut)
			_, _ = io.Copy(out, e.sp.term)
		})
	}
}

// waitExit waits for the process and records its exit.
func (e *ExecProcess) waitExit() {
	defer close(e.done)
	ps, err := e.sp.wait()
	e.exit = exitOf(ps)
	e.exit.Time = time.Now()
	if ps == nil && err != nil {
		e.err = fmt.Errorf("wait for process %d in container %s: %w", e.sp.pid, e.c.name, err)
	}
	if e.ttyOut != nil {
		// The master reads EOF once the last holder of the terminal is
		// gone; a process the exec left behind may hold it longer.
		select {
		case <-e.ttyOut:
		case <-time.After(logDrain):
		}
	}
}

// Pid is the process's pid in photon-init's PID namespace.
func (e *ExecProcess) Pid() int { return e.sp.pid }

// Terminal is the master of the process's terminal, nil without TTY. The
// ExecProcess owns it: Close closes it.
func (e *ExecProcess) Terminal() *Terminal { return e.sp.term }

// Resize sets the size of the process's terminal in characters.
func (e *ExecProcess) Resize(width, height uint16) error {
	if e.sp.term == nil {
		return errors.New("resize: the process has no terminal")
	}
	return e.sp.term.Resize(width, height)
}

// Done is closed when the process has exited and Wait returns at once.
func (e *ExecProcess) Done() <-chan struct{} { return e.done }

// Wait waits for the process to exit and for its output (Stdout and
// Stderr, or the terminal copied to Stdout) to be copied, at most
// 2 seconds past the exit: nothing is written to them once Wait returned.
// The Exit has Code and Signal; OOM fields are the container's business
// (see OOMEvents). When ctx ends first, ctx's error is returned and the
// process goes on.
func (e *ExecProcess) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-e.done:
		return e.exit, e.err
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

// Signal sends sig to the process (not to what it started). The pid
// cannot be reused under it: the process is held by a pidfd.
func (e *ExecProcess) Signal(sig syscall.Signal) error {
	select {
	case <-e.done:
		return fmt.Errorf("signal process %d: %w", e.sp.pid, os.ErrProcessDone)
	default:
	}
	if err := e.sp.p.Signal(sig); err != nil {
		return fmt.Errorf("signal process %d: %w", e.sp.pid, err)
	}
	return nil
}

// Kill sends SIGKILL to the process and to its descendants in the
// container (those that have not left its process tree by daemonizing).
func (e *ExecProcess) Kill() error {
	select {
	case <-e.done:
		return nil
	default:
	}
	e.c.killDescendants(e.sp.pid)
	if err := e.sp.p.Signal(unix.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill process %d: %w", e.sp.pid, err)
	}
	return nil
}

// Close kills the process and its descendants if it still runs, waits
// for it, and closes its terminal.
func (e *ExecProcess) Close() error {
	var err error
	if kerr := e.Kill(); kerr != nil {
		err = kerr
	}
	select {
	case <-e.done:
	case <-time.After(killWait):
		err = errors.Join(err, fmt.Errorf("process %d in container %s: still running %v after SIGKILL", e.sp.pid, e.c.name, killWait))
	}
	if e.sp.term != nil {
		if cerr := e.sp.term.Close(); cerr != nil && !errors.Is(cerr, os.ErrClosed) {
			err = errors.Join(err, cerr)
		}
	}
	return err
}

// killDescendants sends SIGKILL to the descendants of pid among the
// container's processes (read from its cgroup and /proc), before pid
// itself is killed and they are re-parented.
func (c *Container) killDescendants(root int) {
	pids, err := c.lc.Processes()
	if err != nil {
		c.rt.log.Debug("container: list processes", "container", c.name, "err", err)
		return
	}
	parent := make(map[int]int, len(pids))
	for _, pid := range pids {
		if pp, err := ppid(pid); err == nil {
			parent[pid] = pp
		}
	}
	tree := map[int]bool{root: true}
	for grown := true; grown; {
		grown = false
		for pid, pp := range parent {
			if tree[pp] && !tree[pid] {
				tree[pid], grown = true, true
			}
		}
	}
	for pid := range tree {
		if pid != root {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// ppid reads a process's parent from /proc/PID/stat.
func ppid(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	return strconv.Atoi(f[1])
}

// Run runs argv in the running container as Exec does (the container's
// user, environment and working directory; stdin /dev/null) and returns
// its exit code and the first RunOutputLimit bytes of its combined stdout
// and stderr. A timeout > 0 bounds the run: at the timeout the process
// and its descendants are killed and the error wraps ErrRunTimeout and
// context.DeadlineExceeded; when
// ctx ends first they are killed too and the error wraps ctx's. code is
// -1 whenever err is not nil. A process killed by a signal gives
// 128+signal. It is what a health check needs; a CMD-SHELL test is the
// caller's ["/bin/sh", "-c", CMD].
func (c *Container) Run(ctx context.Context, argv []string, timeout time.Duration) (code int, output []byte, err error) {
	out := &limitedBuffer{max: RunOutputLimit}
	p, err := c.Exec(ctx, ExecOptions{Args: argv, Stdout: out, Stderr: out})
	if err != nil {
		return -1, nil, err
	}
	defer p.Close()
	wctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	exit, err := p.Wait(wctx)
	if err == nil {
		return exit.Code, out.Bytes(), nil
	}
	if kerr := p.Kill(); kerr != nil {
		c.rt.log.Warn("container: kill a timed-out process", "container", c.name, "err", kerr)
	}
	select {
	case <-p.Done():
	case <-time.After(killWait):
	}
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%s in container %s: %w after %v (%w)", argv[0], c.name, ErrRunTimeout, timeout, context.DeadlineExceeded)
	} else {
		err = fmt.Errorf("%s in container %s: %w", argv[0], c.name, err)
	}
	return -1, out.Bytes(), err
}

// limitedBuffer keeps the first max bytes written to it and discards the
// rest (still reporting them written, so that the process never blocks).
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// Bytes returns a copy of what was kept.
func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}
