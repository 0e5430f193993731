package logs

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/photon-init/photon-init/internal/safe"
)

// Defaults of ConsoleLimit. 50 lines of 100 bytes a second are about half
// of what a 115200-baud serial console carries.
const (
	DefaultConsoleLinesPerSecond = 50
	DefaultConsoleBurst          = 200
	DefaultConsoleReportEvery    = 3 * time.Second
)

// ConsoleLimit limits a container's lines on the console with a token
// bucket: LinesPerSecond lines a second on average, Burst at once.
type ConsoleLimit struct {
	// LinesPerSecond is the average rate; 0 means
	// DefaultConsoleLinesPerSecond, a negative value means no limit.
	LinesPerSecond float64
	// Burst is the most lines shown at once; 0 means DefaultConsoleBurst.
	Burst int
	// ReportEvery is how often, while lines are being dropped, their count
	// is shown; 0 means DefaultConsoleReportEvery.
	ReportEvery time.Duration
}

// consoleDest writes each line whole, with the container's name in front,
// as long as the token bucket allows; it counts the others and reports the
// count.
type consoleDest struct {
	w           io.Writer
	prefix      string
	contPrefix  string
	notShown    string // " lines not shown; see PATH\n", after the count
	reportEvery time.Duration
	now         func() time.Time
	log         *slog.Logger
	lim         *rate.Limiter // nil: no limit

	mu       sync.Mutex // Write runs under the Sink's lock, the report timer not
	dropped  uint64
	skipping [2]bool // per stream: the head of the current long line was dropped
	timer    *time.Timer
	closed   bool
	buf      []byte
}

func newConsoleDest(w io.Writer, name, path string, l ConsoleLimit, now func() time.Time, log *slog.Logger) *consoleDest {
	if l.LinesPerSecond == 0 {
		l.LinesPerSecond = DefaultConsoleLinesPerSecond
	}
	if l.Burst <= 0 {
		l.Burst = DefaultConsoleBurst
	}
	if l.ReportEvery <= 0 {
		l.ReportEvery = DefaultConsoleReportEvery
	}
	c := &consoleDest{
		w:           w,
		prefix:      "[" + name + "] ",
		contPrefix:  "[" + name + "]+ ",
		notShown:    " lines not shown\n",
		reportEvery: l.ReportEvery,
		now:         now,
		log:         log,
	}
	if l.LinesPerSecond > 0 {
		c.lim = rate.NewLimiter(rate.Limit(l.LinesPerSecond), l.Burst)
	}
	if path != "" {
		c.notShown = " lines not shown; see " + path + "\n"
	}
	return c
}

func streamIndex(s Stream) int {
	if s == Stderr {
		return 1
	}
	return 0
}

func (c *consoleDest) Write(lines []Line) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var firstErr error
	// The tokens are taken once for the batch (a flood's batches are
	// hundreds of lines).
	now := c.now()
	avail := len(lines)
	if c.lim != nil {
		avail = int(c.lim.TokensAt(now))
	}
	shown := 0
	defer func() {
		if c.lim != nil && shown > 0 {
			c.lim.AllowN(now, shown)
		}
	}()
	for _, l := range lines {
		si := streamIndex(l.Stream)
		// A piece of a line whose head was not shown is not shown
		// either; otherwise every piece is a line of its own.
		if (l.Continued && c.skipping[si]) || shown >= avail {
			c.skipping[si] = l.Partial
			c.dropped++
			if c.timer == nil && !c.closed {
				c.timer = time.AfterFunc(c.reportEvery, c.timerReport)
			}
			continue
		}
		c.skipping[si] = false
		shown++
		p := c.prefix
		if l.Continued {
			p = c.contPrefix
		}
		c.buf = append(append(append(c.buf[:0], p...), l.Text...), '\n')
		if _, err := c.w.Write(c.buf); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("console: %w", err)
		}
	}
	return firstErr
}

// timerReport shows the count of lines dropped since the last report.
func (c *consoleDest) timerReport() {
	err := safe.Call("container console report", func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.timer = nil
		if c.closed {
			return nil
		}
		return c.report()
	})
	if err != nil {
		c.log.Warn("container log: console report failed", "err", err)
	}
}

// report writes "[NAME] N lines not shown; see PATH" if lines were
// dropped. c.mu is held.
func (c *consoleDest) report() error {
	if c.dropped == 0 {
		return nil
	}
	c.buf = append(strconv.AppendUint(append(c.buf[:0], c.prefix...), c.dropped, 10), c.notShown...)
	c.dropped = 0
	if _, err := c.w.Write(c.buf); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

// Close reports lines dropped since the last report.
func (c *consoleDest) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	return c.report()
}
