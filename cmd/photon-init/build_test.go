package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/photon-init/photon-init/internal/testimage"
	"github.com/photon-init/photon-init/pkg/containers/image"
)

// buildFixture writes an init binary and a small modules directory.
func buildFixture(t *testing.T) (initBin, modDir string) {
	t.Helper()
	root := t.TempDir()
	initBin = filepath.Join(root, "init-bin")
	modDir = filepath.Join(root, "lib", "modules", "6.1.0-99-test")
	files := map[string]string{
		initBin: "fake init",
		filepath.Join(modDir, "modules.dep"): "kernel/drivers/virtio/virtio_ring.ko:\n" +
			"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n" +
			"kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n" +
			"kernel/sound/other.ko:\n",
		filepath.Join(modDir, "modules.alias"):                        "alias virtio:d00000001v* virtio_net\nalias snd-other other\n",
		filepath.Join(modDir, "kernel/drivers/virtio/virtio_ring.ko"): "ring",
		filepath.Join(modDir, "kernel/drivers/virtio/virtio.ko"):      "virtio",
		filepath.Join(modDir, "kernel/drivers/net/virtio_net.ko"):     "net",
		filepath.Join(modDir, "kernel/sound/other.ko"):                "other",
	}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return initBin, modDir
}

func runBuildT(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = runBuild(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func cpioList(t *testing.T, file string, verbose bool) string {
	t.Helper()
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("no cpio command")
	}
	args := []string{"-t", "--quiet"}
	if verbose {
		args = []string{"-tvn", "--quiet"}
	}
	cmd := exec.Command("cpio", args...)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdin = f
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestBuildUsageErrors(t *testing.T) {
	initBin, modDir := buildFixture(t)
	out := filepath.Join(t.TempDir(), "initramfs.img")
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"no -o", []string{"--init", initBin}, "-o FILE is required"},
		{"unknown flag", []string{"-o", out, "--frobnicate"}, "frobnicate"},
		{"stray argument", []string{"-o", out, "extra"}, `unexpected argument "extra"`},
		{"bad compression", []string{"-o", out, "--compress", "xz"}, `unknown compression "xz"`},
		{"module without modules dir", []string{"-o", out, "--module", "virtio_net"}, "need --modules"},
		{"bad image reference", []string{"-o", out, "--init", initBin, "--image", "app=oci:"}, "--image: image reference \"oci:\": no path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runBuildT(t, tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.msg) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.msg)
			}
		})
	}
	if code, _, stderr := runBuildT(t, "-h"); code != 0 || !strings.Contains(stderr, "usage: photon-init build") {
		t.Errorf("-h: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a usage error wrote the output")
	}
	_ = modDir
}

func TestBuildFailures(t *testing.T) {
	initBin, modDir := buildFixture(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-init")
	code, _, stderr := runBuildT(t, "-o", filepath.Join(dir, "a.img"), "--init", missing)
	if code != 1 || !strings.Contains(stderr, missing) {
		t.Errorf("missing --init: exit %d, stderr %q", code, stderr)
	}
	badOut := filepath.Join(dir, "no-such-dir", "a.img")
	code, _, stderr = runBuildT(t, "-o", badOut, "--init", initBin, "--modules", modDir)
	if code != 1 || !strings.Contains(stderr, badOut) {
		t.Errorf("unwritable -o: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runBuildT(t, "-o", filepath.Join(dir, "b.img"), "--init", initBin, "--modules", filepath.Join(dir, "nomods"))
	if code != 1 || !strings.Contains(stderr, filepath.Join(dir, "nomods", "modules.dep")) {
		t.Errorf("bad --modules: exit %d, stderr %q", code, stderr)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed builds left files: %v", ents)
	}
}

func TestBuildWritesArchive(t *testing.T) {
	initBin, modDir := buildFixture(t)
	overlay := t.TempDir()
	if err := os.MkdirAll(filepath.Join(overlay, "etc", "photon"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(overlay, "etc", "photon", "init.yaml"), []byte("hostname: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "initramfs.img")
	code, stdout, stderr := runBuildT(t, "-o", out, "--init", initBin, "--modules", modDir,
		"--no-default-modules", "--module", "virtio:d00000001v00001AF4,nope", "--overlay", overlay)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, `warning: module "nope" not found`) {
		t.Errorf("stderr %q: want a warning for nope", stderr)
	}
	if !strings.HasPrefix(stdout, out+": ") || !strings.Contains(stdout, " 3 modules, ") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("summary %q", stdout)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("output dir holds %v, want only the image", ents)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("output: %v, %v", fi, err)
	}
	list := cpioList(t, out, false)
	for _, want := range []string{"init\n", "dev/console\n", "etc/photon/init.yaml\n",
		"lib/modules/6.1.0-99-test/kernel/drivers/net/virtio_net.ko\n", "lib/modules/6.1.0-99-test/modules.alias\n"} {
		if !strings.Contains(list, want) {
			t.Errorf("cpio -t lacks %q:\n%s", want, list)
		}
	}
	if strings.Contains(list, "other.ko") {
		t.Errorf("cpio -t lists an unrequested module:\n%s", list)
	}
	for _, l := range strings.Split(strings.TrimSpace(cpioList(t, out, true)), "\n") {
		if f := strings.Fields(l); len(f) < 4 || f[2] != "0" || f[3] != "0" {
			t.Errorf("not owned by 0:0: %q", l)
		}
	}

	// Same inputs, same bytes; every compression gives a smaller file.
	first, _ := os.ReadFile(out)
	if code, _, stderr := runBuildT(t, "-o", out, "--init", initBin, "--modules", modDir,
		"--no-default-modules", "--module", "virtio:d00000001v00001AF4,nope", "--overlay", overlay); code != 0 {
		t.Fatalf("rebuild: %s", stderr)
	}
	if second, _ := os.ReadFile(out); !bytes.Equal(first, second) {
		t.Error("rebuild differs")
	}
	for _, c := range []string{"gzip", "lz4", "zstd"} {
		zout := filepath.Join(dir, "initramfs."+c)
		code, stdout, stderr := runBuildT(t, "-o", zout, "--init", initBin, "--compress", c)
		if code != 0 || !strings.Contains(stdout, "("+c+" of ") {
			t.Errorf("--compress %s: exit %d, %q %q", c, code, stdout, stderr)
		}
	}
}

func TestBuildHostModules(t *testing.T) {
	dirs, _ := filepath.Glob("/lib/modules/6.1.0-*-amd64")
	if len(dirs) == 0 {
		t.Skip("no /lib/modules/6.1.0-*-amd64 on this host")
	}
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("no cpio command")
	}
	modDir := dirs[0]
	initBin, _ := buildFixture(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "initramfs.img")
	code, stdout, stderr := runBuildT(t, "-o", out, "--init", initBin, "--modules", modDir)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	t.Log(strings.TrimSpace(stdout))
	list := cpioList(t, out, false)
	for _, want := range []string{"/virtio_net.ko\n", "/crc32c_generic.ko\n", "/ext4.ko\n", "/evdev.ko\n"} {
		if !strings.Contains(list, want) {
			t.Errorf("archive lacks %s", strings.TrimSpace(want))
		}
	}
	unpacked := t.TempDir()
	cmd := exec.Command("cpio", "-id", "--quiet", "lib/modules/*/modules.alias")
	cmd.Dir = unpacked
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdin = f
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v\n%s", err, b)
	}
	trimmed, err := os.ReadFile(filepath.Join(unpacked, "lib/modules", filepath.Base(modDir), "modules.alias"))
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(filepath.Join(modDir, "modules.alias"))
	if err != nil {
		t.Fatal(err)
	}
	if len(trimmed) == 0 || len(trimmed)*20 > len(orig) {
		t.Errorf("trimmed modules.alias is %d bytes of %d", len(trimmed), len(orig))
	}
}

// TestBuildImage preloads the test image and checks the listing: layer
// files under the store with their owners, the record, a missing image
// failing the build without output.
func TestBuildImage(t *testing.T) {
	im := testimage.Build(t, "")
	initBin, _ := buildFixture(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "initramfs.img")
	code, stdout, stderr := runBuildT(t, "-o", out, "--init", initBin, "--image", "app:1="+im.OCIMultiRef(), "--image-store", "/var/lib/images")
	if code != 0 || !strings.Contains(stdout, "image app:1: sha256:") || !strings.Contains(stdout, "3 layers") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	list := cpioList(t, out, true)
	for _, want := range []string{
		"var/lib/images/" + image.RecordPath("app:1"),
		"/fs/bin/httpserver",
		"1000     1000",    // owned.txt keeps its owner
		"/fs/data/old.txt", // the whiteout, a 0/0 character device
	} {
		if !strings.Contains(list, want) {
			t.Errorf("archive lacks %q:\n%s", want, list)
		}
	}
	code, _, stderr = runBuildT(t, "-o", filepath.Join(dir, "bad.img"), "--init", initBin, "--image", "oci:"+filepath.Join(dir, "none"))
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing image: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.img")); err == nil {
		t.Error("a failed image build wrote the output")
	}
}
