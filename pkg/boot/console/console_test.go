package console

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// slowWriter blocks every write until released, like a full serial line.
type slowWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	release chan struct{}
}

func (w *slowWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *slowWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestWriteNeverBlocksAndCountsDrops(t *testing.T) {
	w := &slowWriter{release: make(chan struct{})}
	c := New(w)
	line := []byte(strings.Repeat("x", 1023) + "\n")
	start := time.Now()
	for i := 0; i < 1000; i++ { // 1 MB into a stuck device
		c.Write(line)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("writes to a stuck console took %v", d)
	}
	close(w.release)
	c.Flush(5 * time.Second)
	c.Write([]byte("after\n"))
	c.Flush(5 * time.Second)
	out := w.String()
	if !strings.Contains(out, "messages not shown here") {
		t.Errorf("dropped messages not reported")
	}
	if !strings.HasSuffix(out, "after\n") {
		t.Errorf("console did not recover after drops")
	}
	if n := strings.Count(out, strings.Repeat("x", 1023)); n == 0 || n >= 1000 {
		t.Errorf("%d lines shown; want some but not all", n)
	}
}

func TestOpenWritesToEveryDevice(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"ttyS0", "tty0"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var early bytes.Buffer
	c := New(&early)
	c.Write([]byte("early\n"))
	errs := c.Open(dir, []string{"ttyS0", "tty0", "ttyS0", "missing"})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "missing") {
		t.Errorf("Open errors = %v, want one for the missing device", errs)
	}
	if got := c.Devices(); len(got) != 2 {
		t.Errorf("devices = %v", got)
	}
	c.Write([]byte("late\n"))
	c.Flush(time.Second)
	if early.String() != "early\n" {
		t.Errorf("early output = %q", early.String())
	}
	for _, n := range []string{"ttyS0", "tty0"} {
		data, _ := os.ReadFile(filepath.Join(dir, n))
		if string(data) != "late\n" {
			t.Errorf("%s got %q", n, data)
		}
	}
	// No device opens: keep the old output.
	if errs := c.Open(dir, []string{"nope"}); len(errs) != 1 || len(c.Devices()) != 2 {
		t.Errorf("failed Open changed outputs: %v %v", errs, c.Devices())
	}
}

func TestHandlerFormat(t *testing.T) {
	var buf bytes.Buffer
	clock := func() time.Duration { return 1234567 * time.Microsecond }
	lv := new(slog.LevelVar)
	log := slog.New(NewHandler(&buf, lv, clock))
	tests := []struct {
		log  func()
		want string
	}{
		{func() { log.Info("kmod: loaded virtio_net") }, "[    1.234567] photon-init: kmod: loaded virtio_net\n"},
		{func() { log.Error("config: bad", "file", "/etc/photon/init.yaml", "err", "a b") }, `[    1.234567] photon-init: ERROR config: bad file=/etc/photon/init.yaml err="a b"` + "\n"},
		{func() { log.Warn("w", "took", 1500*time.Microsecond) }, "[    1.234567] photon-init: WARNING w took=1.5ms\n"},
		{func() { log.With("step", "apifs").WithGroup("g").Info("m", "k", 1) }, "[    1.234567] photon-init: m step=apifs g.k=1\n"},
		{func() { log.Debug("hidden") }, ""},
		{func() { log.Log(context.Background(), LevelNotice, "boot complete") }, "[    1.234567] photon-init: boot complete\n"},
	}
	for _, tt := range tests {
		buf.Reset()
		tt.log()
		if buf.String() != tt.want {
			t.Errorf("got  %q\nwant %q", buf.String(), tt.want)
		}
	}
	lv.Set(slog.LevelDebug)
	buf.Reset()
	log.Debug("shown")
	if !strings.Contains(buf.String(), "shown") || !log.Handler().Enabled(context.Background(), slog.LevelDebug) {
		t.Errorf("debug not shown after level change")
	}
}

// markOverlay brackets each write with markers, like a shell hiding and
// redrawing its prompt.
type markOverlay struct {
	w     *bytes.Buffer
	mu    *sync.Mutex
	panic bool
}

func (o markOverlay) Around(write func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.panic {
		panic("overlay broke")
	}
	o.w.WriteString("<hide>")
	write()
	o.w.WriteString("<redraw>")
}

// lockedWriter is a bytes.Buffer written under a shared lock.
type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	if l.mu.TryLock() {
		defer l.mu.Unlock()
	}
	return l.b.Write(p)
}

func TestAttachOverlay(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	c := New(lockedWriter{&mu, &buf})
	detach := c.Attach("stderr", markOverlay{w: &buf, mu: &mu})
	c.Write([]byte("one\n"))
	c.Flush(time.Second)
	detach()
	c.Write([]byte("two\n"))
	c.Flush(time.Second)
	c.Attach("stderr", markOverlay{w: &buf, mu: &mu, panic: true})
	c.Write([]byte("three\n"))
	c.Flush(time.Second)
	mu.Lock()
	got := buf.String()
	mu.Unlock()
	if want := "<hide>one\n<redraw>two\nthree\n"; got != want {
		t.Errorf("console wrote %q, want %q", got, want)
	}

	// An overlay attached by name applies to a device opened later, and
	// only to it.
	dir := t.TempDir()
	for _, n := range []string{"ttyS0", "tty0"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var ovBuf bytes.Buffer
	c2 := New(&bytes.Buffer{})
	c2.Attach("ttyS0", markOverlay{w: &ovBuf, mu: &sync.Mutex{}})
	if errs := c2.Open(dir, []string{"tty0", "ttyS0"}); len(errs) != 0 {
		t.Fatal(errs)
	}
	c2.Write([]byte("msg\n"))
	c2.Flush(time.Second)
	if ovBuf.String() != "<hide><redraw>" {
		t.Errorf("overlay of ttyS0 saw %q", ovBuf.String())
	}
	for _, n := range []string{"ttyS0", "tty0"} {
		if data, _ := os.ReadFile(filepath.Join(dir, n)); string(data) != "msg\n" {
			t.Errorf("%s got %q", n, data)
		}
	}
}
