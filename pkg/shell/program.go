package shell

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
)

// Programs run on a pseudo-terminal of their own, relayed to and from the
// console, and never on the console's tty itself: when the leader of a
// session whose controlling terminal is a real tty (a serial line, a
// virtual console) exits, the kernel hangs that tty up (tty_vhangup), and
// every file photon-init has open on it — the shell's, the console
// output's — is dead from then on. A pseudo-terminal is spared that, and
// gives the program what it expects of a terminal: Ctrl-C and Ctrl-Z from
// its line discipline, job control, a window size. One compromise: the
// console keeps turning LF into CR LF while a program runs (photon-init's
// messages need it), so a full-screen program that moves the cursor down
// with a bare LF draws less tidily than on a terminal of its own.

// drainAfterExit is how long the output of a program's leftover children
// (which may hold the pseudo-terminal open) is still relayed after the
// program ended.
const drainAfterExit = 500 * time.Millisecond

// RunOnTerminal runs cmd on a new pseudo-terminal relayed to and from the
// tty term, as its stdin, stdout, stderr and controlling terminal, in a
// session of its own, through run; it returns the program's exit code.
// term is in raw mode meanwhile and cooked afterwards. It is how the
// machine's own /bin/sh is started on the console.
func RunOnTerminal(term *os.File, cmd *exec.Cmd, run ProgramRunner) (int, error) {
	if term == nil {
		return -1, errors.New("no terminal")
	}
	mode := newTTYMode(term)
	if mode == nil {
		return -1, fmt.Errorf("%s is not a terminal", term.Name())
	}
	if err := mode.raw(); err != nil {
		return -1, err
	}
	defer mode.cooked()
	return relayProgram(term, mode.saved, term, nil, cmd, run)
}

// relayProgram runs cmd through run on a new pseudo-terminal whose line
// settings are the cooked ones of console (tio), copying typeahead and
// then what is typed on term (in raw mode) to it and what it shows to out,
// until the program has ended and its output is drained.
func relayProgram(term *os.File, tio unix.Termios, out io.Writer, typeahead []byte, cmd *exec.Cmd, run ProgramRunner) (int, error) {
	// The console turns LF into CR LF already (raw mode keeps ONLCR, for
	// photon-init's messages): the pseudo-terminal must not do it again.
	ptyTio := cookedTermios(tio)
	ptyTio.Oflag &^= unix.ONLCR
	master, slave, err := openPTY(ptyTio, consoleSize(term))
	if err != nil {
		return -1, err
	}
	defer master.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	// A session of its own whose controlling terminal is the
	// pseudo-terminal: Ctrl-C and Ctrl-Z go to the program.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}

	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		_ = safe.Call("relay output", func() error {
			_, err := io.Copy(out, master) // ends with EIO once no one has the slave open
			return err
		})
	}()
	inDone := make(chan struct{})
	go func() {
		defer close(inDone)
		_ = safe.Call("relay input", func() error {
			if len(typeahead) > 0 {
				if _, err := master.Write(typeahead); err != nil {
					return err
				}
			}
			buf := make([]byte, 256)
			for {
				n, err := term.Read(buf)
				if n > 0 {
					if _, werr := master.Write(buf[:n]); werr != nil {
						return werr
					}
				}
				if err != nil {
					return err
				}
			}
		})
	}()

	code, err := run(cmd)
	slave.Close()
	// The keys are the shell's again.
	term.SetReadDeadline(time.Now())
	master.SetWriteDeadline(time.Now())
	<-inDone
	term.SetReadDeadline(time.Time{})
	select {
	case <-outDone:
	case <-time.After(drainAfterExit):
		master.SetReadDeadline(time.Now())
		<-outDone
	}
	return code, err
}

// cookedTermios is tio with what a program expects of a terminal:
// canonical lines with echo, signals from the keyboard, CR read as LF, LF
// written as CR LF.
func cookedTermios(tio unix.Termios) unix.Termios {
	tio.Lflag |= unix.ICANON | unix.ECHO | unix.ECHOE | unix.ECHOK | unix.ISIG | unix.IEXTEN
	tio.Iflag |= unix.ICRNL
	tio.Oflag |= unix.OPOST | unix.ONLCR
	return tio
}

// consoleSize is the window size the kernel has for term, or 80x24 when it
// has none (a serial line's is 0x0 unless someone set it).
func consoleSize(term *os.File) unix.Winsize {
	ws := unix.Winsize{Row: 24, Col: 80}
	rc, err := term.SyscallConn()
	if err != nil {
		return ws
	}
	rc.Control(func(fd uintptr) {
		if w, err := unix.IoctlGetWinsize(int(fd), unix.TIOCGWINSZ); err == nil && w.Row > 0 && w.Col > 0 {
			ws = *w
		}
	})
	return ws
}

// openPTY opens a new pseudo-terminal: the master stays in Go's poller, so
// that its reads and writes can be cut short; the slave gets tio and size.
func openPTY(tio unix.Termios, size unix.Winsize) (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("no pseudo-terminal for the program: %w", err)
	}
	rc, err := master.SyscallConn()
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pseudo-terminal: %w", err)
	}
	var n uint32
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr == nil {
			n, ierr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
		}
	}); err != nil || ierr != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pseudo-terminal: unlock: %w", errors.Join(err, ierr))
	}
	path := fmt.Sprintf("/dev/pts/%d", n)
	slave, err = os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pseudo-terminal: %w", err)
	}
	src, err := slave.SyscallConn()
	if err == nil {
		err = src.Control(func(fd uintptr) {
			ierr = unix.IoctlSetTermios(int(fd), unix.TCSETS, &tio)
			if ierr == nil {
				ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &size)
			}
		})
	}
	if err = errors.Join(err, ierr); err != nil {
		master.Close()
		slave.Close()
		return nil, nil, fmt.Errorf("pseudo-terminal %s: %w", path, err)
	}
	return master, slave, nil
}
