package vm

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Line is one line of the serial console.
type Line struct {
	// Text is the line without its line ending.
	Text string
	// At is when the host read the line, measured from QEMU's start.
	At time.Duration
}

// console collects the serial output of one VM: it writes the raw bytes to
// a log and splits them into lines that waiters are woken for.
type console struct {
	start time.Time
	raw   io.Writer

	mu      sync.Mutex
	lines   []Line
	partial []byte
	closed  bool
	// changed is closed and replaced whenever a line arrives or the
	// console closes.
	changed chan struct{}
}

// newConsole returns a console whose times count from start and which
// copies every byte to raw.
func newConsole(start time.Time, raw io.Writer) *console {
	return &console{start: start, raw: raw, changed: make(chan struct{})}
}

// Write takes serial output as it arrives.
func (c *console) Write(p []byte) (int, error) {
	if _, err := c.raw.Write(p); err != nil {
		return 0, fmt.Errorf("console log: %w", err)
	}
	at := time.Since(c.start)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = append(c.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		c.lines = append(c.lines, Line{Text: cleanLine(c.partial[:i]), At: at})
		c.partial = c.partial[i+1:]
		added = true
	}
	if added {
		c.notify()
	}
	return len(p), nil
}

// close ends the console: a line without a line ending is kept, and
// waiters learn that no more will come.
func (c *console) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if len(c.partial) > 0 {
		c.lines = append(c.lines, Line{Text: cleanLine(c.partial), At: time.Since(c.start)})
		c.partial = nil
	}
	c.closed = true
	c.notify()
}

// notify wakes every waiter. The caller holds c.mu.
func (c *console) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// find returns the index of the first line at or after from that matches
// re, or -1, together with the channel that is closed when more output
// arrives and whether the console has ended.
func (c *console) find(re *regexp.Regexp, from int) (int, Line, <-chan struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := from; i < len(c.lines); i++ {
		if re.MatchString(c.lines[i].Text) {
			return i, c.lines[i], c.changed, c.closed
		}
	}
	return -1, Line{}, c.changed, c.closed
}

// snapshot returns a copy of the lines so far.
func (c *console) snapshot() []Line {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Line, len(c.lines), len(c.lines)+1)
	copy(out, c.lines)
	if len(c.partial) > 0 {
		out = append(out, Line{Text: cleanLine(c.partial), At: time.Since(c.start)})
	}
	return out
}

// cleanLine drops the carriage returns the guest's tty adds.
func cleanLine(b []byte) string {
	return strings.ReplaceAll(string(b), "\r", "")
}

// joinLines renders lines as console text.
func joinLines(lines []Line) string {
	var sb strings.Builder
	for _, l := range lines {
		sb.WriteString(l.Text)
		sb.WriteByte('\n')
	}
	return sb.String()
}
