// Package logs carries a container's stdout and stderr, line by line, to
// its log file, to the console and to an in-memory ring for the control API.
//
// A Sink belongs to one run of one container. Each stream gets a Writer (an
// io.WriteCloser that the container's pipe is copied into); the Writer cuts
// what it receives into lines and hands each write's lines, as one batch, to
// the Sink's destinations, in this order:
//
//   - the log file LOGDIR/NAME.log, opened for appending and created 0640,
//     one line per record in the CRI log format that kubelet and crictl use:
//     "TIME STREAM TAG TEXT", TIME in RFC 3339 with nanoseconds (UTC), STREAM
//     "stdout" or "stderr", TAG "F" for a full line or "P" for a piece of a
//     line that goes on in the next record (see AppendRecord, ParseRecord).
//     The file is rotated by size (see Rotation): NAME.log becomes
//     NAME.log.1, NAME.log.1 becomes NAME.log.2 and so on, keeping
//     Rotation.MaxFiles rotated files. Rotation happens between records, so
//     every line is in exactly one file, and readers open the files by name
//     (see Ring.Stream, which reads them without gap or duplicate);
//   - the console, each line written whole in one Write as "[NAME] TEXT\n",
//     a continuation piece of a split line as "[NAME]+ TEXT\n", at most
//     ConsoleLimit.LinesPerSecond lines a second with bursts of
//     ConsoleLimit.Burst (a token bucket). Lines over the limit are counted
//     and the count reported on the console every ConsoleLimit.ReportEvery
//     while lines are being dropped, and when the Sink closes:
//     "[NAME] 1234 lines not shown; see /var/log/photon/NAME.log";
//   - any further Destination given in Options, such as a Ring (see Rings),
//     which keeps the last lines in memory for the control API's tail,
//     since and follow.
//
// A line longer than Options.MaxLine (DefaultMaxLine, 16 KiB) is split into
// pieces of that size; a last line that the stream ends without a newline is
// written as a whole line when the Writer is closed.
//
// The console must not block: pass pkg/boot/console's Console, which queues
// per device and drops (counting) when a slow serial line falls behind, so a
// container writing as fast as it can is never slowed to the console's
// speed. The file gets every line: a batch is one write(2) (two around a
// rotation).
//
// A Writer never returns an error to its caller: a failing destination is
// reported on Options.Log (once until it recovers) and the container goes
// on, since making its pipe fill up would stop the container.
//
// One Sink at a time may write a container's file: a Sink counts the file's
// size itself to decide when to rotate.
//
// Putting it together: the engine makes one Rings for the machine with
// RingOptions.Dir the log directory and gives Rings.Destinations as
// container.Options.LogDestinations, so that each run's Sink also feeds
// the container's ring; the control API serves "logs" with
// Rings.Lookup(name) and Ring.Stream (tail, since, follow; the files for
// what the ring no longer holds). The machine's defaults (init.yaml's
// containers.logs) and a manifest's logging section become
// Options.Rotation (Rotation.Override) and Options.ConsoleLimit.
package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultMaxLine is the longest piece of a line written as one record.
const DefaultMaxLine = 16 << 10

// readBufSize is the size of the buffers a Writer reads a pipe into (see
// writer.ReadFrom): as io.Copy's, so a flood takes as many reads as before.
const readBufSize = 32 << 10

// keepArena is the largest arena a writer keeps once its pipe is quiet;
// a larger one (after a burst of output) is let go, so that an idle
// container holds no burst-sized buffer.
const keepArena = 4 << 10

// FileMode is the permission of a newly created log file.
const FileMode = 0o640

// Stream names one of a container's output streams.
type Stream string

// The streams.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// Line is one line of a container's output, or one piece of a line that
// was longer than the maximum.
type Line struct {
	// Stream is the stream the line was written to.
	Stream Stream
	// Time is when the line was received.
	Time time.Time
	// Text is the line without its newline. It is only valid during the
	// Destination's Write call.
	Text []byte
	// Partial says that the line goes on in the next Line of the same
	// stream (it was cut at the maximum length).
	Partial bool
	// Continued says that this Line continues the previous Line of the
	// same stream.
	Continued bool

	// pos is where the Sink's log file got the line's record; the file
	// destination sets it before the further destinations see the line
	// (a Ring uses it to join its lines to the files' exactly).
	pos position
}

// Destination receives a container's lines.
type Destination interface {
	// Write takes the lines of one write to one stream, in order. It must
	// not block for long and must not keep the lines' Text.
	Write(lines []Line) error
	// Close releases the destination; no Write follows.
	Close() error
}

// Options configure a Sink.
type Options struct {
	// Dir is the directory of log files; the file is Dir/NAME.log. ""
	// writes no file.
	Dir string
	// Rotation limits the log file's size; the zero value means
	// DefaultMaxSize and DefaultMaxFiles.
	Rotation Rotation
	// Console receives "[NAME] TEXT\n" lines; nil writes none. It must not
	// block (see the package documentation).
	Console io.Writer
	// ConsoleLimit limits the lines written to the Console; the zero value
	// means the defaults (DefaultConsoleLinesPerSecond, ...).
	ConsoleLimit ConsoleLimit
	// MaxLine is the longest record; 0 means DefaultMaxLine.
	MaxLine int
	// Destinations are further destinations, after the file and the
	// console. The Sink closes them.
	Destinations []Destination
	// Log receives destination errors; nil discards them.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Sink is one container's log: it fans the lines of its Writers out to the
// file, the console and further destinations.
type Sink struct {
	name    string
	path    string
	maxLine int
	now     func() time.Time
	log     *slog.Logger

	// bufs holds the read buffers of the Sink's writers between reads
	// (see writer.ReadFrom); the garbage collector empties it while the
	// container is quiet.
	bufs sync.Pool

	mu      sync.Mutex // serialises batches and guards the fields below
	dests   []Destination
	failing []bool // per destination: an error was reported and not yet cleared
	closed  bool
}

// Open returns the Sink of the container called name, creating Dir and
// opening (creating) its log file.
func Open(name string, opts Options) (*Sink, error) {
	if name == "" || filepath.Base(name) != name || name == "." || name == ".." {
		return nil, fmt.Errorf("logs: %q is not a container name", name)
	}
	s := &Sink{
		name:    name,
		maxLine: opts.MaxLine,
		now:     opts.Now,
		log:     opts.Log,
	}
	if s.maxLine <= 0 {
		s.maxLine = DefaultMaxLine
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.Dir != "" {
		f, err := openFile(opts.Dir, name, opts.Rotation)
		if err != nil {
			return nil, err
		}
		s.path = f.path
		s.dests = append(s.dests, f)
	}
	if opts.Console != nil {
		s.dests = append(s.dests, newConsoleDest(opts.Console, name, s.path, opts.ConsoleLimit, s.now, s.log))
	}
	s.dests = append(s.dests, opts.Destinations...)
	s.failing = make([]bool, len(s.dests))
	return s, nil
}

// Path is the log file's path, or "" when the Sink writes no file.
func (s *Sink) Path() string { return s.path }

// Writer returns a writer for one stream. Each Writer is used by one
// goroutine at a time; Close flushes a last unterminated line. Writers of
// the same Sink may be used concurrently. The writer is also an
// io.ReaderFrom: io.Copy from a pipe (an *os.File) waits for data without
// holding a buffer (see ReadFrom), so a quiet container costs no read
// buffer.
func (s *Sink) Writer(stream Stream) io.WriteCloser {
	return &writer{sink: s, stream: stream}
}

// getBuf returns a read buffer of readBufSize.
func (s *Sink) getBuf() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, readBufSize)
	return &b
}

// Close closes every destination. Lines written afterwards are dropped.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, d := range s.dests {
		if err := d.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// emit hands one batch to every destination.
func (s *Sink) emit(lines []Line) {
	if len(lines) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for i, d := range s.dests {
		err := d.Write(lines)
		switch {
		case err != nil && !s.failing[i]:
			s.failing[i] = true
			s.log.Warn("container log: a destination failed; lines are lost until it recovers",
				"container", s.name, "err", err)
		case err == nil && s.failing[i]:
			s.failing[i] = false
			s.log.Info("container log: destination recovered", "container", s.name)
		}
	}
}

// writer cuts one stream into lines.
type writer struct {
	sink   *Sink
	stream Stream

	pending []byte // the start of a line not yet ended
	cont    bool   // the next piece continues a line already emitted
	closed  bool

	// arena and lines are reused between writes to save allocations.
	arena []byte
	lines []Line
}

// Write cuts p into lines and emits them. It always consumes all of p.
func (w *writer) Write(p []byte) (int, error) {
	if w.closed {
		return len(p), nil
	}
	n := len(p)
	max := w.sink.maxLine
	now := w.sink.now()
	w.arena = w.arena[:0]
	w.lines = w.lines[:0]
	type span struct {
		off, end       int
		partial, contd bool
	}
	var spans []span
	add := func(text []byte, partial bool) {
		off := len(w.arena)
		w.arena = append(w.arena, text...)
		spans = append(spans, span{off, len(w.arena), partial, w.cont})
		w.cont = partial
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		// Emit full-size pieces while pending plus chunk is too long.
		for len(w.pending)+len(chunk) > max {
			take := max - len(w.pending)
			if len(w.pending) > 0 {
				piece := append(w.pending, chunk[:take]...)
				add(piece, true)
				w.pending = w.pending[:0]
			} else {
				add(chunk[:take], true)
			}
			chunk = chunk[take:]
		}
		if i < 0 {
			w.pending = append(w.pending, chunk...)
			break
		}
		if len(w.pending) > 0 {
			w.pending = append(w.pending, chunk...)
			add(w.pending, false)
			w.pending = w.pending[:0]
		} else {
			add(chunk, false)
		}
		p = p[i+1:]
	}
	for _, sp := range spans {
		w.lines = append(w.lines, Line{
			Stream: w.stream, Time: now, Text: w.arena[sp.off:sp.end],
			Partial: sp.partial, Continued: sp.contd,
		})
	}
	w.sink.emit(w.lines)
	return n, nil
}

// idle lets go of a burst-sized arena while the stream is quiet (kept
// while data keeps coming, so a flood reuses it).
func (w *writer) idle() {
	if cap(w.arena) > keepArena {
		w.arena, w.lines = nil, nil
	}
}

// ReadFrom copies r to the writer until r ends, and returns the number of
// bytes copied; it is what io.Copy calls (through os.File.WriteTo). When
// r is a file that the runtime's poller waits on (a pipe), it waits for
// data without holding a buffer, then reads what is there into a buffer
// of the Sink's pool and writes it: a container whose output is quiet
// holds no read buffer (io.Copy's own buffer was 32 KiB per stream for
// the stream's whole life). Other readers are copied with a buffer of
// that size, as io.Copy would.
func (w *writer) ReadFrom(r io.Reader) (int64, error) {
	if sc, ok := r.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return w.readFromRaw(rc)
		}
	}
	bp := w.sink.getBuf()
	defer w.sink.bufs.Put(bp)
	var total int64
	for {
		n, err := r.Read(*bp)
		if n > 0 {
			w.Write((*bp)[:n])
			total += int64(n)
		}
		switch {
		case err == io.EOF:
			return total, nil
		case err != nil:
			return total, err
		}
	}
}

// readFromRaw is ReadFrom for a file that can wait for readiness: a
// buffer is taken from the pool only once data is there.
func (w *writer) readFromRaw(rc syscall.RawConn) (int64, error) {
	var total int64
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			bp := w.sink.getBuf()
			defer w.sink.bufs.Put(bp)
			for {
				n, rerr = unix.Read(int(fd), *bp)
				if rerr != unix.EINTR {
					break
				}
			}
			if rerr == unix.EAGAIN {
				w.idle()
				return false // nothing yet: wait for the poller, holding no buffer
			}
			if n > 0 {
				w.Write((*bp)[:n])
			}
			return true
		})
		switch {
		case err != nil: // the file was closed, or it cannot be waited on
			return total, err
		case rerr != nil:
			return total, rerr
		case n <= 0:
			return total, nil // end of the stream
		}
		total += int64(n)
	}
}

// Close emits an unterminated last line as a whole line.
func (w *writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if len(w.pending) == 0 {
		return nil
	}
	line := Line{Stream: w.stream, Time: w.sink.now(), Text: w.pending, Continued: w.cont}
	w.sink.emit([]Line{line})
	w.pending = nil
	return nil
}
