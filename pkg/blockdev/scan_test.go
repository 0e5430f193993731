package blockdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/photon-init/photon-init/pkg/blockdev/blockdevtest"
)

// fakeBlock makes a sysfs block directory under sys for a device with the
// given numbers and size, and for a partition its "partition" file.
func fakeBlock(t *testing.T, dir, devno string, size int64, part int) {
	t.Helper()
	files := map[string]string{"dev": devno, "size": fmt.Sprint(size / 512), "ro": "0"}
	if part > 0 {
		files["partition"] = fmt.Sprint(part)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestScan lays out a sysfs tree by hand — a GPT disk with an ext4 and a
// blank partition, a whole-disk vfat, an empty drive — with image files as
// the device nodes.
func TestScan(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	block := filepath.Join(sys, "block")
	disk := blockdevtest.Image(t, 64<<20)
	cmd := exec.Command(blockdevtest.Need(t, "sfdisk"), "--no-reread", "--no-tell-kernel", "-q", disk)
	cmd.Stdin = strings.NewReader("label: gpt\nstart=2048, size=40960, name=data, uuid=" + uuidA + "\nstart=43008, size=40960, uuid=" + uuidB + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	link := func(src, name string) {
		if err := os.Rename(src, filepath.Join(dev, name)); err != nil {
			t.Fatal(err)
		}
	}
	link(disk, "vda")
	p1 := blockdevtest.Image(t, 20<<20)
	blockdevtest.Run(t, "mkfs.ext4", "-q", "-F", "-L", "photon-data", "-U", uuidB, p1)
	link(p1, "vda1")
	link(blockdevtest.Image(t, 20<<20), "vda2")
	fat := blockdevtest.Image(t, 16<<20)
	blockdevtest.Run(t, "mkfs.vfat", "-n", "BOOT", fat)
	link(fat, "vdb")
	fakeBlock(t, filepath.Join(block, "vda"), "253:0", 64<<20, 0)
	fakeBlock(t, filepath.Join(block, "vda", "vda1"), "253:1", 20<<20, 1)
	fakeBlock(t, filepath.Join(block, "vda", "vda2"), "253:2", 20<<20, 2)
	fakeBlock(t, filepath.Join(block, "vdb"), "253:16", 16<<20, 0)
	fakeBlock(t, filepath.Join(block, "sr0"), "11:0", 0, 0)

	s := NewScanner(sys, dev)
	devs, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range devs {
		got = append(got, d.Describe())
	}
	want := `vda (partitioned), vda1 (ext4 "photon-data"), vda2 (no filesystem), vdb (vfat "BOOT")`
	if strings.Join(got, ", ") != want {
		t.Errorf("Scan = %s\nwant   %s", strings.Join(got, ", "), want)
	}
	d1 := devs[1]
	if d1.PartUUID != uuidA || d1.PartLabel != "data" || d1.Disk != "vda" || d1.Partition != 1 ||
		d1.Major != 253 || d1.Minor != 1 || d1.Size != 20<<20 || d1.UUID != uuidB || d1.Path != filepath.Join(dev, "vda1") {
		t.Errorf("vda1 = %+v", d1)
	}
	if devs[2].PartUUID != uuidB {
		t.Errorf("vda2 PARTUUID %q, want %s", devs[2].PartUUID, uuidB)
	}

	ctx := context.Background()
	for spec, want := range map[string]string{
		"LABEL=photon-data": "vda1", "UUID=" + strings.ToUpper(uuidB): "vda1",
		"PARTUUID=" + uuidB: "vda2", "PARTLABEL=data": "vda1", "LABEL=BOOT": "vdb",
	} {
		sp, _ := ParseSpec(spec)
		if d, err := s.Find(ctx, sp, 0); err != nil || d.Name != want {
			t.Errorf("Find(%s) = %s, %v; want %s", spec, d.Name, err, want)
		}
	}
	sp, _ := ParseSpec("LABEL=missing")
	start := time.Now()
	_, err = s.Find(ctx, sp, 300*time.Millisecond)
	var nf *NotFoundError
	if !errors.As(err, &nf) || time.Since(start) < 300*time.Millisecond ||
		!strings.Contains(err.Error(), `LABEL=missing: no such device after 300ms (block devices: vda (partitioned), vda1 (ext4 "photon-data")`) {
		t.Errorf("Find(missing) = %v after %v; want NotFoundError after the timeout", err, time.Since(start))
	}

	// A device reformatted is seen again once forgotten.
	blockdevtest.Run(t, "mkfs.ext4", "-q", "-F", "-L", "renamed", filepath.Join(dev, "vda2"))
	sp, _ = ParseSpec("LABEL=renamed")
	if _, err := s.Find(ctx, sp, 0); err == nil {
		t.Error("the cached probe of vda2 was not used")
	}
	s.Forget("vda2")
	if d, err := s.Find(ctx, sp, 0); err != nil || d.Name != "vda2" {
		t.Errorf("after Forget: %s, %v", d.Name, err)
	}
}

// TestFindWaitsForLateDevice attaches a disk while Find waits for it.
func TestFindWaitsForLateDevice(t *testing.T) {
	label := blockdevtest.Unique("late")
	img := blockdevtest.Image(t, 32<<20)
	blockdevtest.Run(t, "mkfs.ext4", "-q", "-F", "-L", label, img)
	s := NewScanner("/sys", "/dev")
	sp, _ := ParseSpec("LABEL=" + label)
	type result struct {
		d   Device
		err error
	}
	done := make(chan result, 1)
	go func() {
		d, err := s.Find(context.Background(), sp, 10*time.Second)
		done <- result{d, err}
	}()
	time.Sleep(300 * time.Millisecond)
	loop := blockdevtest.Loop(t, img)
	select {
	case r := <-done:
		if r.err != nil || r.d.Name != loop || r.d.Type != "ext4" {
			t.Errorf("Find = %+v, %v; want %s", r.d, r.err, loop)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Find did not return")
	}
}

func TestFindAmbiguous(t *testing.T) {
	label := blockdevtest.Unique("twin")
	for i := 0; i < 2; i++ {
		img := blockdevtest.Image(t, 16<<20)
		blockdevtest.Run(t, "mkfs.ext4", "-q", "-F", "-L", label, img)
		blockdevtest.Loop(t, img)
	}
	sp, _ := ParseSpec("LABEL=" + label)
	if _, err := NewScanner("/sys", "/dev").Find(context.Background(), sp, time.Second); err == nil || !strings.Contains(err.Error(), "2 devices match") {
		t.Errorf("Find of a label two disks carry: %v", err)
	}
}
