// Package console writes photon-init's messages to every console device the
// kernel was given (console=tty0 console=ttyS0 ...), not only the last one
// that /dev/console points at.
//
// A serial console runs at about 11 KB/s: a write must never make PID 1 (or
// a container) wait for it. Each device has its own bounded queue drained by
// its own goroutine; when a queue is full the message is dropped for that
// device, counted, and the count reported once the device catches up.
package console

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// queueBytes bounds what may wait for one device: about 6 seconds of a
// 115200-baud serial line.
const queueBytes = 64 << 10

// Console is a set of console devices. The zero value is not usable; use
// New.
type Console struct {
	mu       sync.Mutex
	sinks    []*sink
	overlays map[string]Overlay // by device name, for sinks opened later
}

// Overlay is an interactive line on a console device: a debug shell's
// prompt and the line being typed. The console writes its messages to that
// device inside Around, which hides the line before and redraws it after,
// so that messages do not wreck the prompt.
type Overlay interface {
	// Around runs write, which writes whole lines to the device.
	Around(write func())
}

type sink struct {
	name string
	w    io.WriteCloser
	ov   atomic.Pointer[overlayRef]

	mu      sync.Mutex
	cond    *sync.Cond
	queue   [][]byte
	queued  int
	dropped int
	writing bool
	closed  bool
}

// New returns a console writing to w (usually os.Stderr, which the kernel
// connects to /dev/console) until Open replaces it with devices.
func New(w io.Writer) *Console {
	c := &Console{}
	c.sinks = []*sink{newSink("stderr", nopCloser{w})}
	return c
}

// overlayRef boxes an Overlay for an atomic pointer.
type overlayRef struct{ ov Overlay }

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func newSink(name string, w io.WriteCloser) *sink {
	s := &sink{name: name, w: w}
	s.cond = sync.NewCond(&s.mu)
	go s.drain()
	return s
}

// Open switches the console to the named devices ("ttyS0", "tty0"), opened
// under devDir (normally /dev). Devices that cannot be opened are skipped
// and returned as errors; if none opens, the console keeps its current
// output. The old outputs are flushed and closed.
func (c *Console) Open(devDir string, names []string) []error {
	var errs []error
	var sinks []*sink
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		path := devDir + "/" + n
		f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			errs = append(errs, fmt.Errorf("open console %s: %w", path, err))
			continue
		}
		sinks = append(sinks, newSink(n, f))
	}
	if len(sinks) == 0 {
		return errs
	}
	c.mu.Lock()
	for _, s := range sinks {
		if ov, ok := c.overlays[s.name]; ok {
			s.ov.Store(&overlayRef{ov})
		}
	}
	old := c.sinks
	c.sinks = sinks
	c.mu.Unlock()
	for _, s := range old {
		s.close(time.Second)
	}
	return errs
}

// Attach makes the console write to the named device (a name Devices
// returns, also for devices opened later) through ov, until the returned
// detach is called. One overlay per device: a later Attach replaces it.
func (c *Console) Attach(device string, ov Overlay) (detach func()) {
	ref := &overlayRef{ov}
	c.mu.Lock()
	if c.overlays == nil {
		c.overlays = map[string]Overlay{}
	}
	c.overlays[device] = ov
	for _, s := range c.sinks {
		if s.name == device {
			s.ov.Store(ref)
		}
	}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if cur, ok := c.overlays[device]; ok && cur == ov {
			delete(c.overlays, device)
		}
		for _, s := range c.sinks {
			s.ov.CompareAndSwap(ref, nil)
		}
	}
}

// Devices returns the names of the current outputs.
func (c *Console) Devices() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, len(c.sinks))
	for i, s := range c.sinks {
		names[i] = s.name
	}
	return names
}

// Write queues p for every output and returns at once; it never blocks on a
// slow device and never fails.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	sinks := c.sinks
	c.mu.Unlock()
	for _, s := range sinks {
		s.enqueue(p)
	}
	return len(p), nil
}

// Flush waits until every output has written what was queued, or timeout.
func (c *Console) Flush(timeout time.Duration) {
	c.mu.Lock()
	sinks := c.sinks
	c.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for _, s := range sinks {
		s.flush(deadline)
	}
}

func (s *sink) enqueue(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.queued+len(p) > queueBytes {
		s.dropped++
		return
	}
	s.queue = append(s.queue, append([]byte(nil), p...))
	s.queued += len(p)
	s.cond.Broadcast()
}

func (s *sink) drain() {
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.closed {
			s.cond.Wait()
		}
		if len(s.queue) == 0 && s.closed {
			s.mu.Unlock()
			s.w.Close()
			return
		}
		batch := s.queue
		s.queue = nil
		dropped := s.dropped
		s.dropped = 0
		s.writing = true
		s.mu.Unlock()

		s.write(batch, dropped)

		s.mu.Lock()
		for _, b := range batch {
			s.queued -= len(b)
		}
		s.writing = false
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// write writes a batch, through the overlay when one is attached.
func (s *sink) write(batch [][]byte, dropped int) {
	written := false
	write := func() {
		written = true
		if dropped > 0 {
			fmt.Fprintf(s.w, "photon-init: console too slow: %d messages not shown here\n", dropped)
		}
		for _, b := range batch {
			s.w.Write(b) // a console that fails cannot be told; keep going
		}
	}
	if ref := s.ov.Load(); ref != nil {
		func() {
			// The overlay is someone else's code: its panic must not
			// end the console (or PID 1).
			defer func() { _ = recover() }()
			ref.ov.Around(write)
		}()
	}
	if !written {
		write()
	}
}

func (s *sink) flush(deadline time.Time) {
	done := make(chan struct{})
	go func() {
		s.mu.Lock()
		for (len(s.queue) > 0 || s.writing) && !s.closed {
			s.cond.Wait()
		}
		s.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
	}
}

func (s *sink) close(timeout time.Duration) {
	s.flush(time.Now().Add(timeout))
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
}
