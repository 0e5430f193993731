// Package blockdevtest makes disks for tests: sparse image files,
// filesystems on them with the Debian tools (installed by scripts/deps.sh),
// loop devices that are detached when the test ends, and a sysfs tree that
// shows a scanner only the test's own devices.
package blockdevtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Need returns the path of a tool the test runs, failing (or, under
// -short, skipping) when scripts/deps.sh has not installed it.
func Need(t testing.TB, tool string) string {
	t.Helper()
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(dir, tool)); err == nil {
			return filepath.Join(dir, tool)
		}
	}
	if testing.Short() {
		t.Skipf("%s not installed (scripts/deps.sh installs it)", tool)
	}
	t.Fatalf("%s not installed: run scripts/deps.sh", tool)
	return ""
}

// Image makes a sparse image file of size bytes in a directory of the
// test.
func Image(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

// Run runs a tool (see Need) and fails the test with its output if it
// fails; it returns the output.
func Run(t testing.TB, tool string, args ...string) string {
	t.Helper()
	out, err := exec.Command(Need(t, tool), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Loop attaches img to a free loop device for the test, detached when the
// test ends, and returns the device's name ("loop3"). It skips the test
// when not root.
func Loop(t testing.TB, img string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	var stderr strings.Builder
	cmd := exec.Command(Need(t, "losetup"), "-f", "--show", img)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("losetup: %v\n%s", err, stderr.String())
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		// A mount namespace that ends can hold the device a moment longer.
		var err error
		var out []byte
		for i := 0; i < 20; i++ {
			if out, err = exec.Command("losetup", "-d", dev).CombinedOutput(); err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
	})
	return filepath.Base(dev)
}

// Sys returns a directory that looks like sysfs to a block device scanner
// but lists only the named devices: DIR/block/NAME links to the real
// /sys/block/NAME. Tests that may format or mount what they find scan it
// instead of the host's whole /sys.
func Sys(t testing.TB, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.Symlink(filepath.Join("/sys/block", n), filepath.Join(dir, "block", n)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var serial atomic.Int64

// Unique returns a name no other device on the host has: prefix, the
// process id and a counter.
func Unique(prefix string) string {
	return fmt.Sprintf("%s%d-%d", prefix, os.Getpid()%100000, serial.Add(1))
}
