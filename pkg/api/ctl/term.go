package ctl

import (
	"io"
	"log/slog"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/api/internal/tty"
)

// terminal is the user's terminal for exec -t.
type terminal struct {
	in    *os.File // the input terminal, nil if input is not one
	sized *os.File // the terminal to take the size of
}

// openTerminal finds the terminals among stdin and stdout; nil if neither
// is one.
func openTerminal(stdin io.Reader, stdout io.Writer) *terminal {
	t := &terminal{}
	if f, ok := stdin.(*os.File); ok && tty.IsTerminal(f) {
		t.in, t.sized = f, f
	}
	if f, ok := stdout.(*os.File); ok && t.sized == nil && tty.IsTerminal(f) {
		t.sized = f
	}
	if t.sized == nil {
		return nil
	}
	return t
}

// size returns the terminal's size.
func (t *terminal) size() (api.TermSize, error) { return tty.Size(t.sized) }

// makeRaw puts the input terminal in raw mode and returns the function
// that restores it; without an input terminal it does nothing.
func (t *terminal) makeRaw() (restore func(), err error) {
	if t.in == nil {
		return func() {}, nil
	}
	return tty.MakeRaw(t.in)
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
