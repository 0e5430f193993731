package mounts

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
)

func TestAPIFilesystemsCreateAndUnmount(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNS) {
		return
	}
	nstest.Private(t)
	root := t.TempDir()
	if err := unix.Mount("root", root, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	warn, fatal := Create(root, APIFilesystems())
	if fatal != nil {
		t.Fatalf("fatal: %v", fatal)
	}
	for _, w := range warn {
		t.Logf("warning: %v", w)
	}
	want := map[string]string{
		"/proc": "proc", "/sys": "sysfs", "/dev": "devtmpfs", "/dev/pts": "devpts",
		"/dev/shm": "tmpfs", "/dev/mqueue": "mqueue", "/run": "tmpfs", "/tmp": "tmpfs",
		"/sys/fs/cgroup": "cgroup2",
	}
	count := func() map[string]int {
		ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(root))
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, m := range ms {
			rel := strings.TrimPrefix(m.Mountpoint, root)
			n[rel]++
			if fs, ok := want[rel]; ok && m.FSType != fs {
				t.Errorf("%s is %s, want %s", rel, m.FSType, fs)
			}
		}
		return n
	}
	first := count()
	for p := range want {
		if first[p] != 1 {
			t.Errorf("%s mounted %d times, want 1", p, first[p])
		}
	}
	for link, target := range map[string]string{"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0", "/dev/stderr": "/proc/self/fd/2"} {
		if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != target {
			t.Errorf("%s -> %q (%v), want %s", link, got, err, target)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "run/photon")); err != nil || !fi.IsDir() {
		t.Errorf("/run/photon missing: %v", err)
	}
	// Idempotent: creating again mounts nothing twice.
	if _, fatal := Create(root, APIFilesystems()); fatal != nil {
		t.Fatal(fatal)
	}
	for p, n := range count() {
		if n != first[p] {
			t.Errorf("%s mounted %d times after a second Create, was %d", p, n, first[p])
		}
	}
	// Keep one filesystem busy: it must still go (lazily).
	busy, err := os.Open(filepath.Join(root, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	failed := UnmountAll(context.Background(), log, root, time.Second)
	if len(failed) != 0 {
		t.Errorf("not unmounted: %v", failed)
	}
	left, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(root))
	for _, m := range left {
		if m.Mountpoint != root {
			t.Errorf("still mounted: %s", m.Mountpoint)
		}
	}
}

func TestCreateStopsAtFatal(t *testing.T) {
	root := t.TempDir()
	var made []string
	items := []Item{
		fakeItem{name: "a", made: &made},
		fakeItem{name: "b", fail: true, made: &made},
		fakeItem{name: "c", fail: true, fatal: true, made: &made},
		fakeItem{name: "d", made: &made},
	}
	warn, fatal := Create(root, items)
	if len(warn) != 1 || fatal == nil || strings.Join(made, ",") != "a,b,c" {
		t.Errorf("warnings %v, fatal %v, made %v", warn, fatal, made)
	}
}

type fakeItem struct {
	name        string
	fail, fatal bool
	made        *[]string
}

func (f fakeItem) Create(string) error {
	*f.made = append(*f.made, f.name)
	if f.fail {
		return os.ErrPermission
	}
	return nil
}
func (f fakeItem) Fatal() bool    { return f.fatal }
func (f fakeItem) String() string { return f.name }

func TestWithin(t *testing.T) {
	for _, tt := range []struct {
		path, dir string
		want      bool
	}{{"/a/b", "/a", true}, {"/a", "/a", true}, {"/ab", "/a", false}, {"/x", "/", true}} {
		if got := within(tt.path, tt.dir); got != tt.want {
			t.Errorf("within(%q, %q) = %v", tt.path, tt.dir, got)
		}
	}
}
