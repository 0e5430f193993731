package shell

import (
	"fmt"
	"io"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Terminal is what a shell runs on: normally the console's tty device,
// opened as an *os.File.
type Terminal interface {
	io.ReadWriter
}

// conner is a Terminal with a file descriptor (an *os.File): a tty gets
// raw mode. The descriptor is reached through SyscallConn, not Fd, which
// would put it in blocking mode for good and end read deadlines.
type conner interface {
	SyscallConn() (syscall.RawConn, error)
}

// deadliner is a Terminal whose reads can be cut short: the shell watches
// for Ctrl-C while a built-in command runs and must stop reading when the
// command ends.
type deadliner interface {
	SetReadDeadline(time.Time) error
}

// ttyMode switches a tty between the editor's raw mode and the cooked mode
// that programs expect.
type ttyMode struct {
	conn  syscall.RawConn
	saved unix.Termios
}

// newTTYMode returns the mode switcher of t, or nil when t is not a tty.
func newTTYMode(t Terminal) *ttyMode {
	c, ok := t.(conner)
	if !ok {
		return nil
	}
	conn, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	m := &ttyMode{conn: conn}
	var terr error
	if err := conn.Control(func(fd uintptr) {
		var tio *unix.Termios
		tio, terr = unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if terr == nil {
			m.saved = *tio
		}
	}); err != nil || terr != nil {
		return nil // not a tty (a pipe in tests)
	}
	return m
}

// set applies t.
func (m *ttyMode) set(t *unix.Termios) error {
	var serr error
	if err := m.conn.Control(func(fd uintptr) { serr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t) }); err != nil {
		return err
	}
	return serr
}

// raw sets the editor's mode: no line discipline on input (no echo, no
// canonical lines, no signals from Ctrl-C/Ctrl-Z, CR not turned into LF),
// one byte at a time. Output processing stays on, so that every writer of
// the console — photon-init's messages too — gets "\n" turned into "\r\n".
// golang.org/x/term's MakeRaw is not used because it turns that off.
func (m *ttyMode) raw() error {
	t := m.saved
	t.Lflag &^= unix.ICANON | unix.ECHO | unix.ECHONL | unix.ISIG | unix.IEXTEN
	t.Iflag &^= unix.ICRNL | unix.INLCR | unix.IGNCR | unix.ISTRIP
	t.Oflag |= unix.OPOST | unix.ONLCR
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := m.set(&t); err != nil {
		return fmt.Errorf("terminal raw mode: %w", err)
	}
	return nil
}

// cooked sets the mode the terminal had, with what a program expects of a
// terminal in any case (cookedTermios).
func (m *ttyMode) cooked() error {
	t := cookedTermios(m.saved)
	if err := m.set(&t); err != nil {
		return fmt.Errorf("terminal cooked mode: %w", err)
	}
	return nil
}
