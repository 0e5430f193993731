package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DefaultSlots is how many VMs StartT runs at once on the machine (across
// test processes) when PHOTON_VM_SLOTS is not set: two VMs use two cores
// well, four oversubscribe them.
const DefaultSlots = 2

// HostT returns the prepared host for a VM test, failing the test when the
// host cannot boot VMs. It skips the test under "go test -short": every
// VM test starts with it.
func HostT(t testing.TB) *Host {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM: skipped with -short")
	}
	h, err := DetectHost(context.Background(), HostOptions{})
	if err != nil {
		t.Fatalf("preparing the host for VMs: %v", err)
	}
	return h
}

// InitramfsT builds an initramfs with "photon-init build" into a
// temporary directory of the test, with files as the overlay (in addition
// to opts.OverlayDir's, if any) and returns its path.
func InitramfsT(t testing.TB, host *Host, files Overlay, opts BuildOptions) string {
	t.Helper()
	dir := t.TempDir()
	if len(files) > 0 {
		overlay := filepath.Join(dir, "overlay")
		if opts.OverlayDir != "" {
			if err := os.CopyFS(overlay, os.DirFS(opts.OverlayDir)); err != nil {
				t.Fatalf("copying overlay %s: %v", opts.OverlayDir, err)
			}
		}
		if err := files.Write(overlay); err != nil {
			t.Fatal(err)
		}
		opts.OverlayDir = overlay
	}
	if opts.Output == "" {
		opts.Output = filepath.Join(dir, "initramfs.img")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := BuildInitramfs(ctx, host, opts); err != nil {
		t.Fatal(err)
	}
	return opts.Output
}

// StartT starts a VM for a test: it waits for one of the machine's VM
// slots (see DefaultSlots), writes the console to out/e2e/TEST.log in the
// repository, and when the test ends kills the VM, fails the test if the
// console shows a kernel panic, and dumps the console into the test log if
// the test failed.
func StartT(t testing.TB, cfg Config) *VM {
	t.Helper()
	if cfg.Host == nil {
		cfg.Host = HostT(t)
	}
	release, err := AcquireSlot(context.Background(), cfg.Host.CacheDir, slotCount())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConsoleLog == "" {
		cfg.ConsoleLog = filepath.Join(cfg.Host.Repo, "out", "e2e", logName(t.Name())+".log")
	}
	v, err := Start(context.Background(), cfg)
	if err != nil {
		release()
		t.Fatalf("starting %s VM: %v", cfg.Machine, err)
	}
	t.Cleanup(func() {
		defer release()
		if err := v.Kill(); err != nil {
			t.Errorf("cleaning up the VM: %v", err)
		}
		if l, ok := v.Find(KernelPanic); ok {
			t.Errorf("the guest kernel panicked: %q", l.Text)
		}
		if t.Failed() {
			t.Logf("console of the %s VM (also in %s):\n%s", v.cfg.Machine, v.cfg.ConsoleLog, v.Console())
			if e := strings.TrimSpace(v.Stderr()); e != "" {
				t.Logf("QEMU stderr:\n%s", e)
			}
		}
	})
	return v
}

// logName turns a test name into a file name.
func logName(testName string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		default:
			return '_'
		}
	}, testName)
}

// slotCount returns $PHOTON_VM_SLOTS or DefaultSlots.
func slotCount() int {
	if n, err := strconv.Atoi(os.Getenv("PHOTON_VM_SLOTS")); err == nil && n > 0 {
		return n
	}
	return DefaultSlots
}

// AcquireSlot blocks until it holds one of n VM slots — lock files in dir
// shared by every process on the machine — and returns the function that
// releases it. The kernel drops a dead process's locks, so a crashed test
// never keeps a slot.
func AcquireSlot(ctx context.Context, dir string, n int) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("VM slots: %w", err)
	}
	for {
		for i := 0; i < n; i++ {
			f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("vm-slot-%d.lock", i)), os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				return nil, fmt.Errorf("VM slots: %w", err)
			}
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				return func() { f.Close() }, nil
			}
			f.Close()
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("VM slots: locking: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a VM slot: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
