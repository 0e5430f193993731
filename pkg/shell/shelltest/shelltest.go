// Package shelltest gives tests of the debug shell a real terminal: a
// pseudo-terminal whose slave side the shell runs on and whose master side
// the test types into and reads the screen from.
package shelltest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"
)

// PTY is a pseudo-terminal for a test. Everything written to the slave
// side is collected, and can be waited for.
type PTY struct {
	// Slave is the terminal device the code under test runs on.
	Slave *os.File
	// SlavePath is the slave's path (/dev/pts/N), to open it again.
	SlavePath string

	master console.Console

	mu      sync.Mutex
	out     bytes.Buffer
	cursor  int // WaitFor looks from here on
	changed chan struct{}
	closed  bool
}

// Open returns a pseudo-terminal that is closed when the test ends.
func Open(t testing.TB) *PTY {
	t.Helper()
	master, path, err := console.NewPty()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	slave, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatalf("open %s: %v", path, err)
	}
	p := &PTY{Slave: slave, SlavePath: path, master: master, changed: make(chan struct{})}
	go p.collect()
	t.Cleanup(func() {
		slave.Close()
		master.Close()
	})
	return p
}

// collect reads the master side until it fails (the slave is closed).
func (p *PTY) collect() {
	buf := make([]byte, 4096)
	for {
		n, err := p.master.Read(buf)
		p.mu.Lock()
		p.out.Write(buf[:n])
		if err != nil {
			p.closed = true
		}
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Type writes s to the terminal as keys, one byte at a time, as a serial
// line delivers them.
func (p *PTY) Type(t testing.TB, s string) {
	t.Helper()
	for i := 0; i < len(s); i++ {
		if _, err := p.master.Write([]byte{s[i]}); err != nil {
			t.Fatalf("typing %q: %v", s, err)
		}
	}
}

// Paste writes s to the terminal in one write, as a fast line or a paste
// delivers several keys at once.
func (p *PTY) Paste(t testing.TB, s string) {
	t.Helper()
	if _, err := p.master.Write([]byte(s)); err != nil {
		t.Fatalf("pasting %q: %v", s, err)
	}
}

// Screen returns everything the terminal showed so far.
func (p *PTY) Screen() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitFor waits until the output after the previous WaitFor's match
// contains want, and returns that output up to and including want.
func (p *PTY) WaitFor(t testing.TB, want string) string {
	t.Helper()
	s, err := p.Wait(want, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Wait is WaitFor returning an error instead of failing the test.
func (p *PTY) Wait(want string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		rest := p.out.String()[p.cursor:]
		ch, closed := p.changed, p.closed
		if i := strings.Index(rest, want); i >= 0 {
			p.cursor += i + len(want)
			p.mu.Unlock()
			return rest[:i+len(want)], nil
		}
		p.mu.Unlock()
		if closed {
			return "", fmt.Errorf("terminal closed before it showed %q; it showed after the last match:\n%q", want, rest)
		}
		select {
		case <-ch:
		case <-deadline:
			return "", fmt.Errorf("the terminal did not show %q within %v; it showed after the last match:\n%q", want, timeout, rest)
		}
	}
}

// RunProgram is a program runner for tests, which have no reaper: it runs
// cmd and returns its exit code.
func RunProgram(cmd *exec.Cmd) (int, error) {
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}
