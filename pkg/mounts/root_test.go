package mounts

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
)

// TestMakeRootPivotable reproduces the initramfs situation — a root that is
// not a mount point of its own, from which pivot_root(2) fails with EINVAL —
// by chrooting into a plain directory in a new mount namespace, and checks
// that pivot_root works after MakeRootPivotable.
func TestMakeRootPivotable(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNS) {
		return
	}
	nstest.Private(t)
	base := t.TempDir()
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "root")
	for _, d := range []string{root, filepath.Join(root, "new")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "marker"), []byte("initramfs"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chroot(root); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chdir("/"); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", "/new", "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir("/new/old", 0o755); err != nil {
		t.Fatal(err)
	}
	if ok, err := IsInitramfsRoot(); err != nil || !ok {
		t.Fatalf("IsInitramfsRoot = %v, %v; want true on a tmpfs root", ok, err)
	}
	if err := unix.PivotRoot("/new", "/new/old"); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("pivot_root before: %v, want EINVAL (the situation to fix)", err)
	}
	if err := MakeRootPivotable(); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile("/marker"); err != nil || string(data) != "initramfs" {
		t.Fatalf("root content after MakeRootPivotable: %q, %v", data, err)
	}
	if err := unix.PivotRoot("/new", "/new/old"); err != nil {
		t.Fatalf("pivot_root after MakeRootPivotable: %v", err)
	}
	if _, err := os.Stat("/old/marker"); err != nil {
		t.Fatalf("old root not under put_old after pivot: %v", err)
	}
}
