package mounts

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
)

// TestSwitchRoot builds the initramfs situation in a mount namespace — a
// tmpfs root made pivotable, API filesystems on it, a "disk" mounted at
// /sysroot — switches to the disk and checks that the API mounts came
// along, the old root's files are gone, and the new root can be pivoted
// away from (as container runtimes do).
func TestSwitchRoot(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNS) {
		return
	}
	nstest.Private(t)
	base := t.TempDir()
	if err := unix.Mount("initramfs", base, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "root")
	for name, content := range map[string]string{
		"init":                 "#!photon-init\n",
		"etc/photon/init.yaml": "hostname: initramfs\n",
		"lib/modules/x.ko":     "module",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/lib", filepath.Join(root, "lib64")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chroot(root); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chdir("/"); err != nil {
		t.Fatal(err)
	}
	if err := MakeRootPivotable(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Mount{
		{Source: "proc", Target: "/proc", FSType: "proc"},
		{Source: "run", Target: "/run", FSType: "tmpfs"},
		{Source: "tmp", Target: "/tmp", FSType: "tmpfs"},
		{Source: "disk", Target: "/sysroot", FSType: "tmpfs"},
	} {
		if err := m.Create("/"); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{"/run/photon/timeline.json": "{}", "/sysroot/etc/hostname": "disk\n"} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, err := os.Open("/")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	res, err := SwitchRoot("/sysroot")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if !slices.Equal(res.Moved, []string{"/proc", "/run", "/tmp"}) || len(res.Detached) != 0 {
		t.Errorf("moved %v, detached %v; want /proc /run /tmp", res.Moved, res.Detached)
	}
	if res.Freed < int64(len("#!photon-init\nhostname: initramfs\nmodule")) || res.Removed < 8 {
		t.Errorf("freed %d bytes in %d entries", res.Freed, res.Removed)
	}
	if b, err := os.ReadFile("/etc/hostname"); err != nil || string(b) != "disk\n" {
		t.Errorf("/etc/hostname on the new root: %q, %v", b, err)
	}
	if _, err := os.Stat("/run/photon/timeline.json"); err != nil {
		t.Errorf("/run did not come along: %v", err)
	}
	ms, err := mountinfo.GetMounts(nil)
	if err != nil {
		t.Fatalf("/proc did not come along: %v", err)
	}
	var top *mountinfo.Info
	for _, m := range ms {
		if m.Mountpoint == "/" && (top == nil || m.ID > top.ID) {
			top = m
		}
	}
	if top == nil || top.Source != "disk" {
		t.Errorf("the root mount is %+v, want the disk", top)
	}
	if names, err := old.Readdirnames(-1); err != nil || len(names) != 0 {
		t.Errorf("left in the old root: %v, %v; want nothing", names, err)
	}
	// Containers pivot_root into their own roots from here.
	if err := (Mount{Source: "ctr", Target: "/ctr", FSType: "tmpfs"}).Create("/"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir("/ctr/old", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.PivotRoot("/ctr", "/ctr/old"); err != nil {
		t.Errorf("pivot_root from the new root: %v", err)
	}
}
