package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
)

// procIO is where a process's standard streams go.
type procIO struct {
	// stdin is copied into the process's stdin; nil gives /dev/null.
	stdin io.Reader
	// stdout and stderr receive its output; nil gives /dev/null. The
	// same writer for both gets one pipe, so the output keeps its order.
	stdout, stderr io.Writer
	// closeWriters: close stdout and stderr (io.Closers) once the pipes
	// are drained (the log sink's writers).
	closeWriters bool
	// tty gives the process a new terminal of the container's devpts as
	// stdin, stdout and stderr; its master comes back in startedProcess.
	tty           bool
	width, height uint16
	// beforeExec, for the first process, runs once the process's init
	// has set it up (its cgroup exists) and before it execs the
	// container's program.
	beforeExec func()
}

// startedProcess is a process started by startProcess.
type startedProcess struct {
	c    *Container
	p    *libcontainer.Process
	pid  int
	term *Terminal // with tty
	// stdin is our end of the stdin pipe; closed once the process has
	// exited.
	stdin *os.File
	// outputs are our ends of the output pipes, drained by copiers.
	outputs []outPipe
	copiers sync.WaitGroup
}

// outPipe is our end of an output pipe and where its data goes.
type outPipe struct {
	r *os.File
	w io.Writer
}

// startProcess starts p in the container, through the reaper (see
// pkg/boot/reaper: the pid is self-waited and released by wait), with its
// standard streams set up as io says.
func (c *Container) startProcess(p *libcontainer.Process, pio procIO) (*startedProcess, error) {
	sp := &startedProcess{c: c, p: p}
	var childEnds []*os.File // the process's ends, closed once it runs
	closeAll := func() {
		for _, f := range childEnds {
			f.Close()
		}
		for _, o := range sp.outputs {
			o.r.Close()
		}
		if sp.stdin != nil {
			sp.stdin.Close()
		}
	}
	var consoleSock *os.File
	if pio.tty {
		parent, child, err := utils.NewSockPair("console")
		if err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		consoleSock = parent
		defer consoleSock.Close()
		childEnds = append(childEnds, child)
		p.ConsoleSocket = child
		p.ConsoleWidth, p.ConsoleHeight = pio.width, pio.height
	} else if err := sp.pipes(p, pio, &childEnds); err != nil {
		closeAll()
		return nil, err
	}
	run := c.lc.Start
	if p.Init {
		// libcontainer's Run in two halves, to look at the cgroup
		// before the program runs.
		run = func(p *libcontainer.Process) error {
			if err := c.lc.Start(p); err != nil {
				return err
			}
			if pio.beforeExec != nil {
				pio.beforeExec()
			}
			return c.lc.Exec()
		}
	}
	var pid int
	err := c.rt.opts.Reaper.Exclusive(func() ([]int, error) {
		err := run(p)
		if n, perr := p.Pid(); perr == nil && n > 0 {
			pid = n
			return []int{n}, err
		}
		return nil, err
	})
	for _, f := range childEnds {
		f.Close()
	}
	childEnds = nil
	if err == nil && pio.tty {
		// The process's init sent the master before it reported ready,
		// so it is waiting in the socket.
		sp.term, err = recvTerminal(consoleSock)
	}
	if err != nil {
		closeAll()
		if pid > 0 {
			// Whatever libcontainer left of it: kill, wait, release.
			safe.Go(c.rt.log, "container "+c.name+" failed start", func() {
				_ = p.Signal(unix.SIGKILL)
				_, _ = p.Wait()
				c.rt.opts.Reaper.Release(pid)
			})
		}
		return nil, err
	}
	sp.pid = pid
	sp.copy(pio)
	return sp, nil
}

// pipes makes the stdio pipes of a process without a terminal.
func (sp *startedProcess) pipes(p *libcontainer.Process, pio procIO, childEnds *[]*os.File) error {
	if pio.stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return fmt.Errorf("stdin pipe: %w", err)
		}
		*childEnds = append(*childEnds, r)
		sp.stdin = w
		p.Stdin = r
	}
	out := func(w io.Writer) (*os.File, error) {
		if w == nil {
			return nil, nil
		}
		r, pw, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("output pipe: %w", err)
		}
		*childEnds = append(*childEnds, pw)
		sp.outputs = append(sp.outputs, outPipe{r, w})
		return pw, nil
	}
	// *os.File values: no copying goroutines in os/exec, whose Wait we
	// do not control.
	stdout, err := out(pio.stdout)
	if err != nil {
		return err
	}
	stderr := stdout
	if !sameWriter(pio.stdout, pio.stderr) {
		if stderr, err = out(pio.stderr); err != nil {
			return err
		}
	}
	if stdout != nil {
		p.Stdout = stdout
	}
	if stderr != nil {
		p.Stderr = stderr
	}
	return nil
}

// sameWriter reports whether a and b are the same writer (without
// panicking on writers of types that are not comparable).
func sameWriter(a, b io.Writer) bool {
	if a == nil || b == nil {
		return false
	}
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta == tb && ta.Comparable() && a == b
}

// copy starts the goroutines that move the standard streams.
func (sp *startedProcess) copy(pio procIO) {
	c := sp.c
	if sp.stdin != nil {
		safe.Go(c.rt.log, "container "+c.name+" stdin", func() {
			_, _ = io.Copy(sp.stdin, pio.stdin)
			sp.stdin.Close()
		})
	}
	for _, o := range sp.outputs {
		sp.copiers.Add(1)
		safe.Go(c.rt.log, "container "+c.name+" output", func() {
			defer sp.copiers.Done()
			_, _ = io.Copy(o.w, o.r)
			if wc, ok := o.w.(io.Closer); ok && pio.closeWriters {
				wc.Close()
			}
		})
	}
}

// wait waits for the process, releases its pid to the reaper, then waits
// up to logDrain for its output to be copied; after that the output pipes
// are closed (a process outside the container's PID namespace that still
// holds them must not hold us) and wait returns once the copiers are
// done: nothing is written to the writers after wait.
func (sp *startedProcess) wait() (*os.ProcessState, error) {
	ps, err := sp.p.Wait()
	sp.c.rt.opts.Reaper.Release(sp.pid)
	if sp.stdin != nil {
		sp.stdin.Close() // a copy in progress ends with EPIPE or EBADF
	}
	ch := make(chan struct{})
	go func() { sp.copiers.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(logDrain):
		sp.c.rt.log.Warn("container: output still open after the process ended; not waiting for it", "container", sp.c.name, "pid", sp.pid)
		for _, o := range sp.outputs {
			o.r.Close()
		}
		<-ch
	}
	for _, o := range sp.outputs {
		o.r.Close()
	}
	return ps, err
}

// recvTerminal receives the terminal master that libcontainer's init
// sends over the console socket (runc's protocol: the pty's name as data,
// its descriptor as SCM_RIGHTS). runc's own helper for this
// (libcontainer/utils.RecvFile) is deprecated and internal from 1.6 on.
func recvTerminal(sock *os.File) (*Terminal, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), name, oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
	}); err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	if rerr != nil {
		return nil, fmt.Errorf("receive the terminal: %w", rerr)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive the terminal: no descriptor (%d control messages, %v)", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("receive the terminal: %d descriptors, %v", len(fds), err)
	}
	// The name sent is the master's (/dev/pts/ptmx); the process's side
	// is /dev/pts/N.
	ptn, err := unix.IoctlGetUint32(fds[0], unix.TIOCGPTN)
	if err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("terminal %s: %w", name[:n], err)
	}
	// Non-blocking, so that the master goes through Go's poller: Close
	// ends a Read in progress.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("terminal: %w", err)
	}
	return &Terminal{f: os.NewFile(uintptr(fds[0]), "/dev/pts/"+strconv.FormatUint(uint64(ptn), 10))}, nil
}

// Terminal is the master side of a terminal given to a process started
// by Exec with TTY: what is written to it is the process's input, what is
// read from it its output.
type Terminal struct {
	f *os.File
}

// Name is the terminal's name in the container (/dev/pts/N).
func (t *Terminal) Name() string { return t.f.Name() }

// Read reads the process's output. Once every process holding the
// terminal has ended it returns io.EOF (the kernel's EIO on a hung-up
// master).
func (t *Terminal) Read(p []byte) (int, error) {
	n, err := t.f.Read(p)
	if errors.Is(err, unix.EIO) {
		err = io.EOF
	}
	return n, err
}

// Write writes to the process's input.
func (t *Terminal) Write(p []byte) (int, error) { return t.f.Write(p) }

// Resize sets the terminal's size in characters; the process gets
// SIGWINCH.
func (t *Terminal) Resize(width, height uint16) error {
	rc, err := t.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: width, Row: height})
	}); err != nil {
		return fmt.Errorf("resize terminal: %w", err)
	}
	if ierr != nil {
		return fmt.Errorf("resize terminal: %w", ierr)
	}
	return nil
}

// Size returns the terminal's width and height in characters.
func (t *Terminal) Size() (width, height uint16, err error) {
	rc, err := t.f.SyscallConn()
	if err != nil {
		return 0, 0, fmt.Errorf("terminal size: %w", err)
	}
	var ws *unix.Winsize
	var ierr error
	if err := rc.Control(func(fd uintptr) { ws, ierr = unix.IoctlGetWinsize(int(fd), unix.TIOCGWINSZ) }); err != nil {
		return 0, 0, fmt.Errorf("terminal size: %w", err)
	}
	if ierr != nil {
		return 0, 0, fmt.Errorf("terminal size: %w", ierr)
	}
	return ws.Col, ws.Row, nil
}

// Close closes the master; the process then sees its terminal hung up.
func (t *Terminal) Close() error { return t.f.Close() }
