// Package timeline records the boot: when each step started and ended, in
// CLOCK_BOOTTIME (time since the kernel started, suspend included), so that
// the figures line up with the kernel's own log timestamps.
package timeline

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Now returns the time since the kernel started (CLOCK_BOOTTIME).
func Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Step is one timed step of the boot.
type Step struct {
	Name  string        `json:"name"`
	Phase string        `json:"phase,omitempty"`
	Start time.Duration `json:"start_ns"`
	End   time.Duration `json:"end_ns"`
	Error string        `json:"error,omitempty"`
}

// Duration is how long the step took.
func (s Step) Duration() time.Duration { return s.End - s.Start }

// Timeline is the boot timeline. It is safe for concurrent use: steps of one
// phase run in parallel.
type Timeline struct {
	clock func() time.Duration

	mu       sync.Mutex
	pid1     time.Duration
	complete time.Duration
	steps    []Step
}

// New returns a timeline whose PID-1 start is pid1Start (from Now, taken as
// early as possible in main). clock is the time source; nil means Now.
func New(pid1Start time.Duration, clock func() time.Duration) *Timeline {
	if clock == nil {
		clock = Now
	}
	return &Timeline{clock: clock, pid1: pid1Start}
}

// PID1Start is when PID 1 started, since kernel start.
func (t *Timeline) PID1Start() time.Duration { return t.pid1 }

// Begin starts timing a step; the returned function ends it, recording err
// (nil for success). Steps are kept in the order they began.
func (t *Timeline) Begin(phase, name string) func(err error) {
	start := t.clock()
	t.mu.Lock()
	i := len(t.steps)
	t.steps = append(t.steps, Step{Name: name, Phase: phase, Start: start, End: -1})
	t.mu.Unlock()
	return func(err error) {
		end := t.clock()
		t.mu.Lock()
		defer t.mu.Unlock()
		t.steps[i].End = end
		if err != nil {
			t.steps[i].Error = err.Error()
		}
	}
}

// Complete marks the boot complete and returns the time since kernel start
// and since PID-1 start.
func (t *Timeline) Complete() (sinceKernel, sincePID1 time.Duration) {
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.complete = now
	return now, now - t.pid1
}

// Steps returns a copy of the recorded steps.
func (t *Timeline) Steps() []Step {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Step(nil), t.steps...)
}

// Document is the JSON form of the timeline (/run/photon/timeline.json).
type Document struct {
	PID1Start time.Duration `json:"pid1_start_ns"`
	Complete  time.Duration `json:"complete_ns,omitempty"`
	Steps     []Step        `json:"steps"`
}

// Document returns the timeline as a serialisable value.
func (t *Timeline) Document() Document {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Document{PID1Start: t.pid1, Complete: t.complete, Steps: append([]Step(nil), t.steps...)}
}

// WriteFile writes the timeline as JSON to path atomically (temporary file,
// then rename), creating the directory.
func (t *Timeline) WriteFile(path string) error {
	data, err := json.MarshalIndent(t.Document(), "", "  ")
	if err != nil {
		return fmt.Errorf("encode timeline: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write timeline: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write timeline: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write timeline: %w", err)
	}
	return nil
}

// Format writes the timeline as a table, one line per step:
// "timeline: phase/name    0.412s → 0.420s     8.1ms  ok".
func (t *Timeline) Format(w io.Writer) {
	for _, s := range t.Steps() {
		status := "ok"
		if s.Error != "" {
			first, rest, more := strings.Cut(s.Error, "\n")
			status = "FAILED: " + first
			if more {
				status += fmt.Sprintf(" (and %d more)", strings.Count(rest, "\n")+1)
			}
		}
		end := "running"
		if s.End >= 0 {
			end = fmt.Sprintf("%.3fs %8.1fms", s.End.Seconds(), float64(s.Duration().Microseconds())/1000)
		}
		name := s.Name
		if s.Phase != "" {
			name = s.Phase + "/" + s.Name
		}
		fmt.Fprintf(w, "timeline: %-24s %7.3fs → %s  %s\n", name, s.Start.Seconds(), end, status)
	}
}
