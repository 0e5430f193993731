package mounts

import (
	"context"
	"errors"
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
	"github.com/photon-init/photon-init/pkg/blockdev"
	"github.com/photon-init/photon-init/pkg/blockdev/blockdevtest"
)

// mountAt returns the mount at path, or nil.
func mountAt(t *testing.T, path string) *mountinfo.Info {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		return nil
	}
	return ms[len(ms)-1]
}

// writeAt writes s into the file at off.
func writeAt(t *testing.T, file string, off int64, s string) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(s), off); err != nil {
		t.Fatal(err)
	}
}

// TestMountAll mounts disks (loop devices) by label, UUID and path, with
// options, a tmpfs and an overlay, formats a blank disk found by path and
// one found for a label, and checks that a missing disk and an unknown
// filesystem fail alone and leave their targets guarded.
func TestMountAll(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNS) {
		return
	}
	nstest.Private(t)
	data := blockdevtest.Unique("data")
	newLabel := blockdevtest.Unique("new")
	const uuid = "0b9b5b3c-7c55-4d0f-9a8e-1f2e3d4c5b6a"

	img := blockdevtest.Image(t, 32<<20)
	filled := t.TempDir()
	if err := os.WriteFile(filepath.Join(filled, "hello.txt"), []byte("from the disk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	blockdevtest.Run(t, "mkfs.ext4", "-q", "-F", "-L", data, "-d", filled, img)
	loopData := blockdevtest.Loop(t, img)
	img2 := blockdevtest.Image(t, 32<<20)
	blockdevtest.Run(t, "mkfs.ext4", "-q", "-F", "-U", uuid, img2)
	loopUUID := blockdevtest.Loop(t, img2)
	loopBlank := blockdevtest.Loop(t, blockdevtest.Image(t, 32<<20))
	loopBlank2 := blockdevtest.Loop(t, blockdevtest.Image(t, 32<<20))
	junk := blockdevtest.Image(t, 32<<20)
	writeAt(t, junk, 0, strings.Repeat("not a filesystem ", 1000))
	loopJunk := blockdevtest.Loop(t, junk)

	root := t.TempDir()
	if err := unix.Mount("root", root, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(root, unix.MNT_DETACH) })
	for _, d := range []string{"lower", "upper"} {
		if err := os.MkdirAll(filepath.Join(root, "ov", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "ov/lower/base.txt"), []byte("lower\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &Mounter{
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Devices:     blockdev.NewScanner(blockdevtest.Sys(t, loopData, loopUUID, loopBlank, loopBlank2, loopJunk), "/dev"),
		Root:        root,
		BlankSettle: 50 * time.Millisecond,
	}
	ov := filepath.Join(root, "ov")
	entries := []Entry{
		{Source: "LABEL=" + data, Target: "/data", Options: "noatime,nodev,errors=remount-ro", Timeout: time.Second},
		{Source: "UUID=" + strings.ToUpper(uuid), Target: "/data/nested", Type: "ext4", Options: "ro"},
		{Source: "/dev/" + loopBlank, Target: "/fresh", MkfsIfEmpty: "ext4"},
		{Source: "LABEL=" + newLabel, Target: "/new", MkfsIfEmpty: "ext4", Timeout: 2 * time.Second},
		{Source: "LABEL=missing-disk", Target: "/missing", Timeout: 200 * time.Millisecond},
		{Source: "/dev/" + loopJunk, Target: "/junk"},
		{Target: "/scratch", Type: "tmpfs", Options: "size=1m,mode=0700"},
		{Target: "/merged", Type: "overlay", Options: "lowerdir=" + ov + "/lower,upperdir=" + ov + "/upper,workdir=" + ov + "/work"},
	}
	done, err := m.MountAll(context.Background(), entries)
	if err == nil {
		t.Fatal("MountAll: no error for the missing disk and the junk")
	}
	for _, want := range []string{
		"LABEL=missing-disk on /missing: LABEL=missing-disk: no such device after 200ms",
		"/dev/" + loopJunk + " on /junk: /dev/" + loopJunk + ": unknown filesystem",
		"/missing is left empty and read-only",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if len(done) != 6 {
		t.Fatalf("mounted %d entries, want 6: %v", len(done), done)
	}
	for _, d := range done {
		t.Logf("mounted: %s", d)
	}

	mi := mountAt(t, filepath.Join(root, "data"))
	if mi == nil || mi.FSType != "ext4" || !strings.Contains(mi.Options, "noatime") || !strings.Contains(mi.Options, "nodev") {
		t.Errorf("/data: %+v", mi)
	}
	if b, err := os.ReadFile(filepath.Join(root, "data/hello.txt")); err != nil || string(b) != "from the disk\n" {
		t.Errorf("hello.txt: %q, %v", b, err)
	}
	if mi := mountAt(t, filepath.Join(root, "data/nested")); mi == nil || !strings.HasPrefix(mi.Options, "ro") {
		t.Errorf("/data/nested: %+v", mi)
	}
	if !done[2].Formatted || done[2].Device.Type != "ext4" || done[3].Device.Name != loopBlank2 || !done[3].Formatted || done[3].Device.Label != newLabel {
		t.Errorf("formatting: %s; %s", done[2], done[3])
	}
	if err := os.WriteFile(filepath.Join(root, "new/x"), []byte("x"), 0o644); err != nil {
		t.Errorf("write to the formatted disk: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "missing/x"), []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write below a missing disk's target: %v, want EROFS", err)
	}
	if mi := mountAt(t, filepath.Join(root, "scratch")); mi == nil || mi.FSType != "tmpfs" || !strings.Contains(mi.VFSOptions, "size=1024k") {
		t.Errorf("/scratch: %+v", mi)
	}
	if b, err := os.ReadFile(filepath.Join(root, "merged/base.txt")); err != nil || string(b) != "lower\n" {
		t.Errorf("overlay: %q, %v", b, err)
	}

	// A second boot: the labelled disks are found, nothing is formatted.
	for _, p := range []string{"new", "fresh", "data/nested", "data"} {
		if err := unix.Unmount(filepath.Join(root, p), 0); err != nil {
			t.Fatal(err)
		}
	}
	m2 := &Mounter{Devices: blockdev.NewScanner(blockdevtest.Sys(t, loopData, loopUUID, loopBlank, loopBlank2, loopJunk), "/dev"), Root: root}
	again, err := m2.MountAll(context.Background(), entries[:4])
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range again {
		if d.Formatted {
			t.Errorf("formatted again: %s", d)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "new/x")); err != nil {
		t.Errorf("file on the disk formatted by the first boot: %v", err)
	}
	failed := UnmountAll(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), root, time.Second)
	if len(failed) != 0 {
		t.Errorf("not unmounted: %v", failed)
	}
}

// TestMkfsRefusesNonBlank: a device with data photon-init cannot name is
// never formatted.
func TestMkfsRefusesNonBlank(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNS) {
		return
	}
	nstest.Private(t)
	img := blockdevtest.Image(t, 16<<20)
	writeAt(t, img, 8192, "database pages")
	loop := blockdevtest.Loop(t, img)
	m := &Mounter{Devices: blockdev.NewScanner(blockdevtest.Sys(t, loop), "/dev"), Root: t.TempDir()}
	_, err := m.Mount(context.Background(), Entry{Source: "/dev/" + loop, Target: "/d", MkfsIfEmpty: "ext4"})
	if err == nil || !strings.Contains(err.Error(), "is not blank") {
		t.Fatalf("Mount = %v, want a refusal", err)
	}
	if fs, _ := blockdev.ProbeFile(img); fs.Type != "" {
		t.Errorf("the disk was formatted: %+v", fs)
	}
}

func TestMkfsCommand(t *testing.T) {
	label, _ := blockdev.ParseSpec("LABEL=DATA")
	uuid, _ := blockdev.ParseSpec("UUID=0b9b5b3c-7c55-4d0f-9a8e-1f2e3d4c5b6a")
	fatID, _ := blockdev.ParseSpec("UUID=1234-ABCD")
	path, _ := blockdev.ParseSpec("/dev/vdb")
	tests := []struct {
		fstype string
		spec   blockdev.Spec
		args   string
	}{
		{"ext4", label, "-q -F -L DATA /dev/vdb"},
		{"ext4", uuid, "-q -F -U 0b9b5b3c-7c55-4d0f-9a8e-1f2e3d4c5b6a /dev/vdb"},
		{"xfs", uuid, "-q -f -m uuid=0b9b5b3c-7c55-4d0f-9a8e-1f2e3d4c5b6a /dev/vdb"},
		{"btrfs", label, "-q -f -L DATA /dev/vdb"},
		{"vfat", fatID, "-i 1234ABCD /dev/vdb"},
		{"vfat", label, "-n DATA /dev/vdb"},
		{"ext2", path, "-q -F /dev/vdb"},
	}
	t.Setenv("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
	for _, tt := range tests {
		blockdevtest.Need(t, "mkfs."+tt.fstype)
		cmd, err := mkfsCommand(tt.fstype, "/dev/vdb", tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(cmd.Args[1:], " "); got != tt.args || filepath.Base(cmd.Path) != "mkfs."+tt.fstype {
			t.Errorf("%s %s: %s %s, want mkfs.%s %s", tt.fstype, tt.spec, cmd.Path, got, tt.fstype, tt.args)
		}
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := mkfsCommand("ext4", "/dev/vdb", label); err == nil || !strings.Contains(err.Error(), "no mkfs.ext4 on PATH") {
		t.Errorf("without mkfs: %v", err)
	}
}
