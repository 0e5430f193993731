package ctl

import (
	"io"
	"log/slog"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/api"
)

// terminal is the user's terminal for exec -t. Its ioctls go through
// SyscallConn rather than File.Fd (which x/term and containerd/console
// use): Fd turns a polled file blocking, and the built-in shell hands in a
// console whose reads it interrupts with deadlines.
type terminal struct {
	in    *os.File // the input terminal, nil if input is not one
	sized *os.File // the terminal to take the size of
}

// openTerminal finds the terminals among stdin and stdout; nil if neither
// is one.
func openTerminal(stdin io.Reader, stdout io.Writer) (*terminal, error) {
	t := &terminal{}
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		t.in, t.sized = f, f
	}
	if f, ok := stdout.(*os.File); ok && t.sized == nil && isTerminal(f) {
		t.sized = f
	}
	if t.sized == nil {
		return nil, nil
	}
	return t, nil
}

func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func isTerminal(f *os.File) bool {
	return control(f, func(fd int) error {
		_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		return err
	}) == nil
}

// size returns the terminal's size.
func (t *terminal) size() (api.TermSize, error) {
	var ws *unix.Winsize
	err := control(t.sized, func(fd int) error {
		var err error
		ws, err = unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		return err
	})
	if err != nil {
		return api.TermSize{}, err
	}
	return api.TermSize{Height: ws.Row, Width: ws.Col}, nil
}

// makeRaw puts the input terminal in raw mode (as cfmakeraw) and returns
// the function that restores it; without an input terminal it does
// nothing.
func (t *terminal) makeRaw() (restore func(), err error) {
	if t.in == nil {
		return func() {}, nil
	}
	var old unix.Termios
	err = control(t.in, func(fd int) error {
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		old = *tio
		tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		tio.Oflag &^= unix.OPOST
		tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		tio.Cflag &^= unix.CSIZE | unix.PARENB
		tio.Cflag |= unix.CS8
		tio.Cc[unix.VMIN] = 1
		tio.Cc[unix.VTIME] = 0
		return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
	})
	if err != nil {
		return nil, err
	}
	return func() {
		control(t.in, func(fd int) error { return unix.IoctlSetTermios(fd, unix.TCSETS, &old) })
	}, nil
}

// watchResize sends the terminal's size at every SIGWINCH until stop is
// called.
func (t *terminal) watchResize(log *slog.Logger) (sizes <-chan api.TermSize, stop func()) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sigs := make(chan os.Signal, 1)
	out := make(chan api.TermSize, 1)
	done := make(chan struct{})
	signal.Notify(sigs, unix.SIGWINCH)
	safe.Go(log, "photonctl: SIGWINCH", func() {
		for {
			select {
			case <-sigs:
				size, err := t.size()
				if err != nil {
					continue
				}
				select {
				case <-out: // a size not yet sent is out of date
				default:
				}
				out <- size
			case <-done:
				return
			}
		}
	})
	return out, func() {
		signal.Stop(sigs)
		close(done)
	}
}
