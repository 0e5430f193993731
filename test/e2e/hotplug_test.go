package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/photon-init/photon-init/test/vm"
)

// TestHotplugDisk boots q35 with an empty PCIe root port and no disk, so
// coldplug loads no disk driver; then it plugs a virtio disk into the
// running machine (QMP device_add). photon-init, still following the
// kernel's uevents after the boot, loads virtio_blk for it and the kernel
// names the disk.
func TestHotplugDisk(t *testing.T) {
	host := vm.HostT(t)
	initrd := vm.InitramfsT(t, host, nil, vm.BuildOptions{Compress: "none"})
	img := filepath.Join(t.TempDir(), "hotplug.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	v := vm.StartT(t, vm.Config{Host: host, Machine: vm.Q35, Initramfs: initrd, QEMUArgs: []string{
		"-device", "pcie-root-port,id=hp0,bus=pcie.0,chassis=1",
		"-drive", "file=" + img + ",if=none,id=hpdisk,format=raw",
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := v.WaitFor(ctx, vm.BootComplete); err != nil {
		t.Fatal(err)
	}
	loaded := regexp.MustCompile(`kmod: loaded virtio_blk`)
	if l, ok := v.Find(loaded); ok {
		t.Fatalf("virtio_blk loaded before any disk was plugged in: %s", l.Text)
	}
	if _, err := v.QMP("device_add", map[string]any{"driver": "virtio-blk-pci", "drive": "hpdisk", "bus": "hp0", "id": "hpdev"}); err != nil {
		t.Fatalf("device_add: %v", err)
	}
	for _, re := range []*regexp.Regexp{loaded, regexp.MustCompile(`virtio_blk virtio\d+: \[vd[a-z]\]`)} {
		if _, err := waitFind(ctx, v, re); err != nil {
			t.Fatalf("after the disk was plugged in, no console line matches %q: %v\n%s", re, err, v.ConsoleTail(30))
		}
	}
}
