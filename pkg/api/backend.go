package api

import (
	"context"
	"io"
	"syscall"
	"time"

	"github.com/photon-init/photon-init/pkg/boot/timeline"
)

// Containers is what the server needs of the container engine. Errors
// carry their status as *Error (see ErrNotFound, ErrConflict, ErrInvalid);
// others are answered as 500. Every method may be called from many
// goroutines at once and must return when ctx is done. The queries and
// streams get the request's context (done when the client goes away);
// the actions (Start, Stop, Restart, Kill, Exec) get the server's (done
// when it shuts down), so that an action, once asked for, is carried out
// whether or not its client waits for the answer.
type Containers interface {
	// List returns every declared container, in a stable order.
	List(ctx context.Context) ([]ContainerInfo, error)
	// Inspect returns one container (ErrNotFound if unknown).
	Inspect(ctx context.Context, name string) (ContainerInfo, error)
	// Start starts a stopped or exited container (ErrConflict if it
	// cannot be started now).
	Start(ctx context.Context, name string) error
	// Stop stops a container with its stop signal, then SIGKILL after the
	// timeout, and returns once it has stopped. Stopping a container that
	// is not running is no error.
	Stop(ctx context.Context, name string, opts StopOptions) error
	// Restart stops the container (if it runs) and starts it again.
	Restart(ctx context.Context, name string, opts StopOptions) error
	// Kill sends sig to the container's first process (ErrConflict if it
	// does not run).
	Kill(ctx context.Context, name string, sig syscall.Signal) error
	// Logs returns the container's log lines selected by opts. The server
	// closes the stream when the client is gone or the stream ended.
	Logs(ctx context.Context, name string, opts LogOptions) (Stream[LogEntry], error)
	// Exec starts a process in a running container with stdio as its
	// streams and returns once it runs (ErrConflict if the container does
	// not run; ErrInvalid for options the runtime refuses; an error also
	// when the program cannot be started). The process lives until it
	// exits or the session's Close; ctx ends with the session. The server
	// calls Close when done.
	Exec(ctx context.Context, name string, opts ExecOptions, stdio ExecIO) (ExecSession, error)
	// Events returns the state changes from since on (the ones still
	// remembered), then new ones as they happen, until the stream is
	// closed.
	// A zero since gives only new events.
	Events(ctx context.Context, since time.Time) (Stream[Event], error)
}

// Stream is a sequence of values that a server handler pulls one by one.
// The server calls Next from one goroutine; Close may be called from
// another at any time (a client gone) and must make a blocked Next return.
// A stream must not buffer without bound: a client that reads slowly makes
// Next be called slowly, and a producer that cannot wait drops (and may
// say so in the values it gives).
type Stream[T any] interface {
	// Next returns the next value. It blocks until there is one, ctx is
	// done (returning ctx.Err()) or the stream is closed; io.EOF ends a
	// stream that has nothing more to give.
	Next(ctx context.Context) (T, error)
	// Close releases the stream.
	Close() error
}

// ExecIO are the streams of a process started by Containers.Exec: the
// client's connection.
type ExecIO struct {
	// Stdin is the client's input, nil without ExecOptions.Stdin (the
	// process's stdin is then empty). Copy it to the process's stdin (to
	// the terminal with a TTY) until it ends: without a TTY its io.EOF is
	// the end of the process's input (close its stdin); with a TTY the
	// end of input is the terminal's EOF character, sent like any other
	// key. A Read may block until the server closes the connection after
	// the session; it must not hold up Wait.
	Stdin io.Reader
	// Stdout receives the process's standard output, or all of the
	// terminal's output with a TTY.
	Stdout io.Writer
	// Stderr receives the process's standard error; nil with a TTY.
	Stderr io.Writer
}

// ExecSession is one process started by Containers.Exec.
type ExecSession interface {
	// Resize sets the terminal's window size (an error without a TTY).
	Resize(size TermSize) error
	// Wait blocks until the process has exited and its output has been
	// written to Stdout and Stderr (nothing is written after Wait
	// returns; a process it left behind holding the output open may be
	// given up on after a short time), and returns its exit code (128+N
	// when killed by signal N). It returns ctx's error when ctx ends
	// first.
	Wait(ctx context.Context) (int, error)
	// Close ends the session: it kills the process (and what it started)
	// if it still runs and releases its terminal. The server calls it
	// once, after Wait returned or when the client is gone.
	Close() error
}

// Machine is what the server needs of the machine: the boot timeline and
// power requests. "photon-init run" has none (Options.Machine nil).
type Machine interface {
	// Timeline returns the boot timeline as recorded so far.
	Timeline(ctx context.Context) (*timeline.Document, error)
	// Power asks for the machine to power off, reboot or halt. It must
	// return once the request is taken (the answer should reach the
	// client); the shutdown goes on without the caller.
	Power(ctx context.Context, action PowerAction) error
}
