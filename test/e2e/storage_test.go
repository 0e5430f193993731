package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/photon-init/photon-init/internal/testimage"
	"github.com/photon-init/photon-init/pkg/blockdev/blockdevtest"
	"github.com/photon-init/photon-init/test/vm"
)

// storageTimeout bounds each boot and shutdown of the storage tests: a boot
// that formats a disk or switches root does a little more than others.
const storageTimeout = 2 * time.Minute

// disks returns QEMU arguments attaching each image as a virtio disk, in
// order (vda, vdb, ...).
func disks(m vm.Machine, images ...string) []string {
	dev := "virtio-blk-pci"
	if m == vm.MicroVM {
		dev = "virtio-blk-device"
	}
	var args []string
	for i, img := range images {
		args = append(args,
			"-drive", fmt.Sprintf("file=%s,if=none,id=disk%d,format=raw", img, i),
			"-device", fmt.Sprintf("%s,drive=disk%d", dev, i))
	}
	return args
}

// ext4Disk makes an ext4 disk image of size (mkfs.ext4's form, "64M")
// labelled label and filled from dir, as a user without root makes one.
func ext4Disk(t *testing.T, label, dir, size string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), label+".img")
	blockdevtest.Run(t, "mkfs.ext4", "-q", "-F", "-L", label, "-d", dir, img, size)
	return img
}

// fsck checks on the host that a disk the guest used was left clean: the
// guest unmounted it (or remounted it read-only) before powering off.
func fsck(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command(blockdevtest.Need(t, "e2fsck"), "-f", "-n", img).CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -f -n %s: %v (the filesystem was not left clean)\n%s", filepath.Base(img), err, out)
	}
}

// debugfsCat reads a file from an ext4 image on the host.
func debugfsCat(t *testing.T, img, path string) string {
	t.Helper()
	out, err := exec.Command(blockdevtest.Need(t, "debugfs"), "-R", "cat "+path, img).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", path, err)
	}
	return string(out)
}

// writeTree writes files (path → content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := vm.Overlay(files).Write(dir); err != nil {
		t.Fatal(err)
	}
}

// busyboxImage writes an OCI image layout (tag "latest") holding the host's
// static busybox as /bin/busybox with a few applet links, for containers
// that run shell commands; it returns the layout's directory.
func busyboxImage(t *testing.T) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static (scripts/deps.sh): %v", err)
	}
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	hdrs := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))},
	}
	for _, applet := range []string{"sh", "cat", "echo", "ls", "sync", "test", "["} {
		hdrs = append(hdrs, &tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Name == "bin/busybox" {
			if _, err := tw.Write(bb); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Config.Env = []string{"PATH=/bin"}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "busybox")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "latest"})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mkfsKit copies the host's mke2fs, as /sbin/mkfs.ext4, with the shared
// libraries and dynamic loader ldd names, into the overlay directory dir:
// what a user adds to an initramfs for mkfs_if_empty (docs/storage.md).
func mkfsKit(t *testing.T, dir string) {
	t.Helper()
	mke2fs := blockdevtest.Need(t, "mke2fs")
	out, err := exec.Command("ldd", mke2fs).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", mke2fs, err)
	}
	files := map[string]string{mke2fs: "sbin/mkfs.ext4", "/etc/mke2fs.conf": "etc/mke2fs.conf"}
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				files[f] = strings.TrimPrefix(f, "/")
			}
		}
	}
	for src, dst := range files {
		data, err := os.ReadFile(src) // follows links: the library itself
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// storageVM boots photon-init with the overlay directory and disks on
// machine m and waits for boot complete.
func storageVM(t *testing.T, m vm.Machine, overlay string, files vm.Overlay, images []string, kernelArgs ...string) (*vm.VM, context.Context) {
	t.Helper()
	host := vm.HostT(t)
	initrd := vm.InitramfsT(t, host, files, vm.BuildOptions{Compress: "none", OverlayDir: overlay})
	return bootDisks(t, host, m, initrd, images, kernelArgs...)
}

// bootDisks boots an initramfs with disks and waits for boot complete.
func bootDisks(t *testing.T, host *vm.Host, m vm.Machine, initrd string, images []string, kernelArgs ...string) (*vm.VM, context.Context) {
	t.Helper()
	v := vm.StartT(t, vm.Config{Host: host, Machine: m, Initramfs: initrd, MemoryMB: 768, KernelArgs: kernelArgs,
		QEMUArgs: disks(m, images...), GuestPorts: []int{8090}})
	ctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
	t.Cleanup(cancel)
	if _, err := v.WaitFor(ctx, vm.BootComplete); err != nil {
		t.Fatal(err)
	}
	return v, ctx
}

// expectLines checks that every pattern matches some console line.
func expectLines(t *testing.T, v *vm.VM, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if _, ok := v.Find(regexp.MustCompile(p)); !ok {
			t.Errorf("no console line matches %q", p)
		}
	}
}

// waitAnyOrder waits until every pattern matches some console line.
func waitAnyOrder(ctx context.Context, t *testing.T, v *vm.VM, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if _, err := waitFind(ctx, v, regexp.MustCompile(p)); err != nil {
			t.Fatal(err)
		}
	}
}

// powerOff presses the power button and waits for the kernel's last word.
func powerOff(ctx context.Context, t *testing.T, v *vm.VM) {
	t.Helper()
	if err := v.Powerdown(); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"shutdown: unmount", "reboot: Power down"} {
		if _, err := v.WaitFor(ctx, regexp.MustCompile(regexp.QuoteMeta(step))); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if l, ok := v.Find(regexp.MustCompile(`shutdown: unmount.*err=|left mounted|remount / read-only`)); ok {
		t.Errorf("unclean unmount: %s", l.Text)
	}
}

// TestStorageDataDisk boots with a data disk labelled photon-data (made by
// mkfs.ext4 -d), a disk holding no filesystem and a disk that is not
// there: the labelled disk is mounted where init.yaml says and a container
// reads a file from it; the other two entries fail alone, each with its
// error, and the boot completes. A container whose volume lives below the
// missing disk's target fails with a read-only error instead of writing
// into memory. The disk is clean after the poweroff.
func TestStorageDataDisk(t *testing.T) {
	forEachMachine(t, vm.Machines(), func(t *testing.T, m vm.Machine) {
		content := t.TempDir()
		writeTree(t, content, map[string]string{"hello.txt": "hello from the data disk"})
		data := ext4Disk(t, "photon-data", content, "32M")
		junk := blockdevtest.Image(t, 16<<20)
		f, err := os.OpenFile(junk, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(bytes.Repeat([]byte("no filesystem here "), 5000), 0); err != nil {
			t.Fatal(err)
		}
		f.Close()

		overlay := t.TempDir()
		if err := os.CopyFS(filepath.Join(overlay, "images", "busybox"), os.DirFS(busyboxImage(t))); err != nil {
			t.Fatal(err)
		}
		files := vm.Overlay{
			"etc/photon/init.yaml": `mounts:
  - source: LABEL=photon-data
    target: /data
    options: noatime,nodev
  - source: /dev/vdb
    target: /junk
  - source: LABEL=not-attached
    target: /missing
    timeout: 2s
  - target: /scratch
    type: tmpfs
    options: size=1m
`,
			"etc/photon/containers/reader.yaml": "image: oci:/images/busybox:latest\nnetwork_mode: host\n" +
				"command: [/bin/sh, -c, 'echo \"read: $(cat /data/hello.txt)\"']\n" +
				"volumes: [\"/data:/data:ro\"]\n",
			"etc/photon/containers/needs-missing.yaml": "image: oci:/images/busybox:latest\nnetwork_mode: host\n" +
				"command: [/bin/sh, -c, 'echo started']\n" +
				"volumes: [\"/missing/db:/db\"]\n",
		}
		v, ctx := storageVM(t, m, overlay, files, []string{data, junk})
		waitAnyOrder(ctx, t, v, `^\[reader\] read: hello from the data disk`)
		expectLines(t, v,
			`mounts: LABEL=photon-data: /dev/vda \(ext4 "photon-data"\) on /data$`,
			`mounts: tmpfs on /scratch$`,
			`ERROR mounts: /dev/vdb on /junk: /dev/vdb: unknown filesystem .*; /junk is left empty and read-only`,
			`ERROR mounts: LABEL=not-attached on /missing: LABEL=not-attached: no such device after 2s \(block devices: vda \(ext4 "photon-data"\), vdb \(no filesystem\)\); /missing is left empty and read-only`,
			`ERROR container needs-missing: .*read-only file system`,
			`timeline: storage/mounts `,
		)
		if l, ok := v.Find(regexp.MustCompile(`\[needs-missing\] started`)); ok {
			t.Errorf("a container ran with its volume below the missing disk's target: %s", l.Text)
		}
		powerOff(ctx, t, v)
		fsck(t, data)
	})
}

// TestStoragePersistence boots twice from the same blank disk with
// /var/lib/photon on it. Boot 1 formats the disk (mkfs_if_empty, with
// mke2fs put into the initramfs), unpacks the image into the store on the
// disk and a container writes into a named volume. Boot 2 finds the disk by
// its label, formats nothing, unpacks nothing, and the container reads what
// it wrote.
func TestStoragePersistence(t *testing.T) {
	t.Parallel()
	host := vm.HostT(t)
	disk := blockdevtest.Image(t, 128<<20)
	overlay := t.TempDir()
	mkfsKit(t, overlay)
	if err := os.CopyFS(filepath.Join(overlay, "images", "busybox"), os.DirFS(busyboxImage(t))); err != nil {
		t.Fatal(err)
	}
	initrd := vm.InitramfsT(t, host, vm.Overlay{
		"etc/photon/init.yaml": `mounts:
  - source: LABEL=photon-data
    target: /var/lib/photon
    mkfs_if_empty: ext4
`,
		"etc/photon/containers/db.yaml": "image: oci:/images/busybox:latest\nnetwork_mode: host\n" +
			"command: [/bin/sh, -c, 'if [ -f /vol/data.txt ]; then echo \"found: $(cat /vol/data.txt)\"; else echo \"empty volume\"; fi; echo persisted-42 > /vol/data.txt; sync; echo written']\n" +
			"volumes: [\"db:/vol\"]\n",
	}, vm.BuildOptions{Compress: "none", OverlayDir: overlay})

	t.Run("first boot", func(t *testing.T) {
		v, ctx := bootDisks(t, host, vm.Q35, initrd, []string{disk})
		waitAnyOrder(ctx, t, v, `^\[db\] empty volume`, `^\[db\] written`)
		expectLines(t, v,
			`mounts: no device has LABEL=photon-data; formatting the blank disk /dev/vda \(mkfs_if_empty: ext4\)`,
			`mounts: formatted /dev/vda as ext4 in `,
			`mounts: LABEL=photon-data: /dev/vda \(ext4 "photon-data"\) on /var/lib/photon, formatted$`,
			`unpacked layer`,
		)
		powerOff(ctx, t, v)
	})
	if t.Failed() {
		return
	}
	fsck(t, disk)
	if got := debugfsCat(t, disk, "/volumes/db/data.txt"); got != "persisted-42\n" {
		t.Errorf("the volume on the disk holds %q", got)
	}
	t.Run("second boot", func(t *testing.T) {
		v, ctx := bootDisks(t, host, vm.Q35, initrd, []string{disk})
		waitAnyOrder(ctx, t, v, `^\[db\] found: persisted-42`, `^\[db\] written`)
		expectLines(t, v, `mounts: LABEL=photon-data: /dev/vda \(ext4 "photon-data"\) on /var/lib/photon$`)
		for _, bad := range []string{`formatt`, `unpacked layer`} {
			if l, ok := v.Find(regexp.MustCompile(bad)); ok {
				t.Errorf("second boot: %s", l.Text)
			}
		}
		powerOff(ctx, t, v)
	})
	fsck(t, disk)
}

// TestStorageSwitchRoot boots an initramfs that holds no configuration and
// no manifests with photon.root=LABEL=photon-root: photon-init mounts the
// disk, moves the API filesystems onto it, frees the initramfs and goes on
// from the disk, whose init.yaml (a tmpfs mount, a host name) and whose
// container (an HTTP server, image on the disk) it then uses. The disk root
// is clean after the poweroff (remounted read-only).
func TestStorageSwitchRoot(t *testing.T) {
	t.Parallel()
	host := vm.HostT(t)
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
	defer cancel()
	if err := vm.BuildServerImage(ctx, host.Repo, filepath.Join(root, "images", "server")); err != nil {
		t.Fatal(err)
	}
	writeTree(t, root, map[string]string{
		"etc/photon/init.yaml": "hostname: disk-root\nmounts:\n  - target: /scratch\n    type: tmpfs\n",
		"etc/photon/containers/web.yaml": "image: oci:/images/server:" + vm.ServerImageTag + "\nnetwork_mode: host\n" +
			"environment:\n  PORT: \"8090\"\n  MESSAGE: served from the disk root\n",
	})
	disk := ext4Disk(t, "photon-root", root, "64M")
	initrd := vm.InitramfsT(t, host, nil, vm.BuildOptions{Compress: "none"})
	v, bctx := bootDisks(t, host, vm.Q35, initrd, []string{disk}, "photon.root=LABEL=photon-root")
	waitAnyOrder(bctx, t, v, `^\[web\] `+regexp.QuoteMeta(testimage.ReadyLine))
	expectLines(t, v,
		`switch-root: root LABEL=photon-root: /dev/vda \(ext4 "photon-root"\) on /sysroot$`,
		`switch-root: running from LABEL=photon-root; moved /proc /sys /dev /run /tmp; freed \d+\.\d MiB of initramfs`,
		`mounts: tmpfs on /scratch$`,
		`timeline: storage/switch-root `,
	)
	client := &http.Client{Timeout: 10 * time.Second}
	body, err := get(bctx, client, "http://"+v.Addr(8090)+"/")
	if err != nil || !strings.HasPrefix(body, "served from the disk root") {
		t.Errorf("GET from the container: %q, %v", body, err)
	}
	powerOff(bctx, t, v)
	fsck(t, disk)
}
