// Package tty does the few terminal operations photonctl and its tests
// need. Every ioctl goes through File.SyscallConn, never File.Fd: Fd turns
// a file the runtime polls into a blocking one, after which Close no
// longer ends a blocked Read and read deadlines stop working, and the
// serial console's shell relies on both (x/term and containerd/console
// call Fd, which is why they are not used here).
package tty

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/api"
)

// Control runs fn with f's descriptor.
func Control(f *os.File, fn func(fd int) error) error {
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

// Termios returns f's terminal attributes (an error if f is no terminal).
func Termios(f *os.File) (*unix.Termios, error) {
	var tio *unix.Termios
	err := Control(f, func(fd int) error {
		var err error
		tio, err = unix.IoctlGetTermios(fd, unix.TCGETS)
		return err
	})
	return tio, err
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := Termios(f)
	return err == nil
}

// Size returns f's window size.
func Size(f *os.File) (api.TermSize, error) {
	var ws *unix.Winsize
	err := Control(f, func(fd int) error {
		var err error
		ws, err = unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		return err
	})
	if err != nil {
		return api.TermSize{}, err
	}
	return api.TermSize{Height: ws.Row, Width: ws.Col}, nil
}

// SetSize sets f's window size.
func SetSize(f *os.File, size api.TermSize) error {
	return Control(f, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: size.Height, Col: size.Width})
	})
}

// MakeRaw puts the terminal f in raw mode (as cfmakeraw) and returns the
// function that restores its attributes.
func MakeRaw(f *os.File) (restore func(), err error) {
	old, err := Termios(f)
	if err != nil {
		return nil, err
	}
	tio := *old
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag &^= unix.CSIZE | unix.PARENB
	tio.Cflag |= unix.CS8
	tio.Cc[unix.VMIN] = 1
	tio.Cc[unix.VTIME] = 0
	if err := Control(f, func(fd int) error { return unix.IoctlSetTermios(fd, unix.TCSETS, &tio) }); err != nil {
		return nil, err
	}
	return func() {
		Control(f, func(fd int) error { return unix.IoctlSetTermios(fd, unix.TCSETS, old) })
	}, nil
}

// OpenPTY opens a new pseudo-terminal pair.
func OpenPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	var n int
	err = Control(master, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return err
		}
		var err error
		n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN)
		return err
	})
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	return master, slave, nil
}
