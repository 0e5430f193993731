package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/photon-init/photon-init/internal/nstest"
	"github.com/photon-init/photon-init/internal/testimage"
	"golang.org/x/sys/unix"
)

// inMountNS re-runs the test in a new mount namespace; it returns true in
// the child, which gets a private tmpfs at the returned directory.
func inMountNS(t *testing.T) (string, bool) {
	t.Helper()
	if !nstest.Run(t, syscall.CLONE_NEWNS) {
		return "", false
	}
	nstest.Private(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir, true
}

func openStore(t testing.TB, root string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(root, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTestImages unpacks the project's test images from each local
// source and checks the trees and configs.
func TestTestImages(t *testing.T) {
	dir, child := inMountNS(t)
	if !child {
		return
	}
	im := testimage.Build(t, "")
	s := openStore(t, filepath.Join(dir, "store"))
	wantCfg := Config{
		Env:          []string{fmt.Sprintf("PORT=%d", testimage.Port), "PATH=/bin"},
		Entrypoint:   []string{testimage.Entrypoint},
		WorkingDir:   "/",
		ExposedPorts: []string{fmt.Sprintf("%d/tcp", testimage.Port)},
		Volumes:      []string{"/data"},
		StopSignal:   "SIGTERM",
		Labels:       map[string]string{"org.photon-init.test": "httpserver"},
	}
	tests := []struct {
		name   string
		ref    string
		layers int
	}{
		{"oci", im.OCIRef(), im.BaseLayers},
		{"oci-archive", im.OCIArchiveRef(), im.BaseLayers},
		{"docker-archive", im.DockerArchiveRef(), im.BaseLayers},
		{"docker-archive OCI form", im.DockerArchiveOCIRef(), im.BaseLayers},
		{"oci multi-layer", im.OCIMultiRef(), im.MultiLayers},
		{"oci without tag", "oci:" + im.OCILayout + ":" + testimage.MultiTag, im.MultiLayers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := s.Get(context.Background(), tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			if len(img.Layers) != tt.layers {
				t.Fatalf("%d layers, want %d", len(img.Layers), tt.layers)
			}
			if img.Ref != tt.ref || !strings.HasPrefix(img.Digest, "sha256:") {
				t.Errorf("ref %q digest %q", img.Ref, img.Digest)
			}
			if !reflect.DeepEqual(img.Config, wantCfg) {
				t.Errorf("config\n got %+v\nwant %+v", img.Config, wantCfg)
			}
			base := img.Layers[0]
			bin := filepath.Join(base, testimage.Entrypoint)
			fi, err := os.Stat(bin)
			if err != nil || fi.Mode().Perm() != 0o755 {
				t.Fatalf("entrypoint: %v %v", fi, err)
			}
			hl, err := os.Stat(filepath.Join(base, testimage.HardlinkFile))
			if err != nil || !os.SameFile(fi, hl) {
				t.Errorf("hardlink %s not the same file as %s: %v", testimage.HardlinkFile, bin, err)
			}
			if l, err := os.Readlink(filepath.Join(base, testimage.SymlinkFile)); err != nil || l != "httpserver" {
				t.Errorf("symlink: %q %v", l, err)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(base, testimage.OwnedFile), &st); err != nil || st.Uid != testimage.OwnedUID || st.Gid != testimage.OwnedGID {
				t.Errorf("owned file: uid %d gid %d %v", st.Uid, st.Gid, err)
			}
			if err := unix.Lstat(filepath.Join(base, "tmp"), &st); err != nil || st.Mode&07777 != 01777 {
				t.Errorf("/tmp mode %o %v", st.Mode&07777, err)
			}
			if tt.layers == im.MultiLayers {
				checkMultiLayers(t, img)
			}
		})
	}
	// The OCI layout holds two images: without a tag there is no choice.
	if _, err := s.Get(context.Background(), "oci:"+im.OCILayout); err == nil || !strings.Contains(err.Error(), "several images") {
		t.Errorf("untagged reference to a two-image layout: %v", err)
	}
}

// checkMultiLayers checks the overlay-form whiteout and opaque directory
// of the multi-layer test image.
func checkMultiLayers(t *testing.T, img *Image) {
	t.Helper()
	var st unix.Stat_t
	wh := filepath.Join(img.Layers[1], testimage.WhitedOut)
	if err := unix.Lstat(wh, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout %s: mode %o rdev %d %v", wh, st.Mode, st.Rdev, err)
	}
	if _, err := os.Lstat(filepath.Join(img.Layers[1], filepath.Dir(testimage.WhitedOut), ".wh.old.txt")); err == nil {
		t.Errorf("the .wh. file itself was written")
	}
	opq := filepath.Join(img.Layers[2], testimage.OpaqueDir)
	v := make([]byte, 8)
	if n, err := unix.Lgetxattr(opq, opaqueXattr, v); err != nil || string(v[:n]) != "y" {
		t.Errorf("%s: %s=%q %v", opq, opaqueXattr, v[:n], err)
	}
	rec, err := readLayerRecord(filepath.Dir(img.Layers[2]))
	if err != nil || !slices.Equal(rec.Opaque, []string{strings.TrimPrefix(testimage.OpaqueDir, "/")}) {
		t.Errorf("layer record opaque: %+v %v", rec, err)
	}
}

// TestOverlayStacking mounts the multi-layer image's layers as an overlay
// and checks the whiteout and opaque directory take effect, then checks
// Flatten gives the same tree.
func TestOverlayStacking(t *testing.T) {
	dir, child := inMountNS(t)
	if !child {
		return
	}
	im := testimage.Build(t, "")
	s := openStore(t, filepath.Join(dir, "store"))
	img, err := s.Get(context.Background(), im.OCIMultiRef())
	if err != nil {
		t.Fatal(err)
	}
	lower := slices.Clone(img.Layers)
	slices.Reverse(lower) // overlay lists the highest first
	merged := filepath.Join(dir, "merged")
	os.Mkdir(merged, 0o755)
	if err := unix.Mount("overlay", merged, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lower, ":")); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)
	flat := filepath.Join(dir, "flat")
	if err := s.Flatten(context.Background(), img, flat); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{merged, flat} {
		if _, err := os.Lstat(filepath.Join(root, testimage.WhitedOut)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: whited-out %s still there: %v", root, testimage.WhitedOut, err)
		}
		if b, err := os.ReadFile(filepath.Join(root, testimage.Kept)); err != nil || string(b) != "keep\n" {
			t.Errorf("%s: %s: %q %v", root, testimage.Kept, b, err)
		}
		ents, err := os.ReadDir(filepath.Join(root, testimage.OpaqueDir))
		if err != nil || len(ents) != 1 || ents[0].Name() != filepath.Base(testimage.OpaqueNew) {
			t.Errorf("%s: opaque dir holds %v (%v), want only %s", root, ents, err, testimage.OpaqueNew)
		}
	}
	if a, b := treeOf(t, merged), treeOf(t, flat); !slices.Equal(a, b) {
		t.Errorf("flattened tree differs from the overlay:\noverlay %v\nflat    %v", a, b)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(flat, testimage.OwnedFile), &st); err != nil || st.Uid != testimage.OwnedUID {
		t.Errorf("flatten lost ownership: uid %d %v", st.Uid, err)
	}
	a, _ := os.Stat(filepath.Join(flat, testimage.Entrypoint))
	b, _ := os.Stat(filepath.Join(flat, testimage.HardlinkFile))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Errorf("flatten lost the hardlink")
	}
	if err := s.Flatten(context.Background(), img, flat); err == nil {
		t.Errorf("Flatten into a non-empty directory succeeded")
	}
}

// TestGetReuses checks that a second Get reads nothing and a second Pull
// unpacks nothing, and that concurrent Gets of images sharing layers
// unpack each layer once.
func TestGetReuses(t *testing.T) {
	dir, child := inMountNS(t)
	if !child {
		return
	}
	shared := makeTar(t, testEntry{name: "bin/", typ: tar.TypeDir}, testEntry{name: "bin/sh", body: "shared"})
	onlyA := makeTar(t, testEntry{name: "a", body: "a"})
	onlyB := makeTar(t, testEntry{name: "b", body: "b"})
	var opens countMap
	sharedBlob := gzipBytes(t, shared)
	mem := &memSource{images: map[string]*Resolved{
		"a": {Digest: "sha256:aaaa", Layers: []Layer{memLayer(sharedBlob, shared, &opens), memLayer(onlyA, onlyA, &opens)}},
		"b": {Digest: "sha256:bbbb", Layers: []Layer{memLayer(sharedBlob, shared, &opens), memLayer(gzipBytes(t, onlyB), onlyB, &opens)}},
	}}
	// Two Stores on one root stand for two processes: only flock keeps
	// them from unpacking a layer twice.
	s := openStore(t, filepath.Join(dir, "store"), WithSource(TransportOCI, mem.fn))
	s2 := openStore(t, filepath.Join(dir, "store"), WithSource(TransportOCI, mem.fn))
	ctx := context.Background()

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			ref := []string{"oci:a", "oci:b"}[i%2]
			if _, err := []*Store{s, s2}[i/2%2].Get(ctx, ref); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, l := range append(mem.images["a"].Layers, mem.images["b"].Layers[1]) {
		if n := opens.get(l.Digest); n != 1 {
			t.Errorf("layer %s read %d times, want once", l.Digest, n)
		}
	}

	resolvesBefore, opensBefore := mem.resolves.total(), opens.total()
	img, err := s.Get(ctx, "oci:a")
	if err != nil {
		t.Fatal(err)
	}
	if mem.resolves.total() != resolvesBefore || opens.total() != opensBefore {
		t.Errorf("second Get resolved or read again")
	}
	if b, err := os.ReadFile(filepath.Join(img.Layers[0], "bin/sh")); err != nil || string(b) != "shared" {
		t.Errorf("shared layer: %q %v", b, err)
	}
	if _, err := s.Pull(ctx, "oci:b"); err != nil {
		t.Fatal(err)
	}
	if opens.total() != opensBefore {
		t.Errorf("Pull of an unpacked image unpacked again")
	}
	// A record whose layer went missing is pulled again.
	os.RemoveAll(filepath.Dir(img.Layers[1]))
	if _, err := s.Get(ctx, "oci:a"); err != nil {
		t.Fatal(err)
	}
	if opens.get(mem.images["a"].Layers[1].Digest) != 2 {
		t.Errorf("missing layer not unpacked again")
	}
	noLeftovers(t, s.Root(), false)
}

// TestStoreLayout checks where a layer and a record land, and that
// another Store on the same root (another process) finds them.
func TestStoreLayout(t *testing.T) {
	dir, child := inMountNS(t)
	if !child {
		return
	}
	layer := makeTar(t, testEntry{name: "f", body: "x"})
	mem := &memSource{images: map[string]*Resolved{"x": {Digest: "sha256:1111", Config: Config{Cmd: []string{"/f"}}, Layers: []Layer{memLayer(layer, layer, nil)}}}}
	root := filepath.Join(dir, "store")
	s := openStore(t, root, WithSource(TransportOCI, mem.fn))
	img, err := s.Get(context.Background(), "oci:x")
	if err != nil {
		t.Fatal(err)
	}
	rel, _ := LayerPath(mem.images["x"].Layers[0].Digest)
	if want := filepath.Join(root, rel, "fs"); img.Layers[0] != want {
		t.Errorf("layer at %s, want %s", img.Layers[0], want)
	}
	if _, err := os.Stat(filepath.Join(root, RecordPath("oci:x"))); err != nil {
		t.Error(err)
	}
	other := openStore(t, root) // no source for oci:x: must come from the record
	again, err := other.Get(context.Background(), "oci:x")
	if err != nil || !reflect.DeepEqual(again, img) {
		t.Errorf("other store: %+v %v, want %+v", again, err, img)
	}
}

// TestRootfs checks rootfs: references.
func TestRootfs(t *testing.T) {
	s := openStore(t, t.TempDir())
	dir := t.TempDir()
	img, err := s.Get(context.Background(), "rootfs:"+dir)
	if err != nil || !slices.Equal(img.Layers, []string{dir}) || !strings.HasPrefix(img.Digest, "sha256:") {
		t.Fatalf("%+v %v", img, err)
	}
	if _, err := s.Get(context.Background(), "rootfs:"+filepath.Join(dir, "missing")); err == nil {
		t.Error("missing rootfs directory accepted")
	}
	if _, err := s.Get(context.Background(), "example.com/app:1"); err == nil || !strings.Contains(err.Error(), "no source for registry") {
		t.Errorf("registry reference without a registered source: %v", err)
	}
}

// TestFixups checks that pending fixups of a layer record (as a preloaded
// initramfs store has them) are applied on first use.
func TestFixups(t *testing.T) {
	dir, child := inMountNS(t)
	if !child {
		return
	}
	root := filepath.Join(dir, "store")
	s := openStore(t, root)
	rel, _ := LayerPath("sha256:" + strings.Repeat("ab", 32))
	layerDir := filepath.Join(root, rel)
	os.MkdirAll(filepath.Join(layerDir, "fs", "etc", "opq"), 0o755)
	os.WriteFile(filepath.Join(layerDir, "fs", "etc", "ping"), nil, 0o755)
	rec := LayerRecord{Digest: "sha256:" + strings.Repeat("ab", 32), Opaque: []string{"etc/opq"},
		Fixups: &LayerFixups{Opaque: true, Xattrs: []Xattr{{Path: "etc/ping", Name: "user.test", Value: []byte("v")}}}}
	if err := writeJSONAtomic(filepath.Join(layerDir, layerMeta), rec); err != nil {
		t.Fatal(err)
	}
	if err := writeJSONAtomic(filepath.Join(root, RecordPath("oci:pre")), ImageRecord{Ref: "oci:pre", Digest: "sha256:22", Layers: []string{rec.Digest}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "oci:pre"); err != nil {
		t.Fatal(err)
	}
	v := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(layerDir, "fs", "etc", "opq"), opaqueXattr, v); err != nil || string(v[:n]) != "y" {
		t.Errorf("opaque fixup: %q %v", v[:n], err)
	}
	if n, err := unix.Lgetxattr(filepath.Join(layerDir, "fs", "etc", "ping"), "user.test", v); err != nil || string(v[:n]) != "v" {
		t.Errorf("xattr fixup: %q %v", v[:n], err)
	}
	after, err := readLayerRecord(layerDir)
	if err != nil || after.Fixups != nil {
		t.Errorf("fixups still pending: %+v %v", after, err)
	}
	// A fixup path leaving the tree is refused.
	rec.Fixups = &LayerFixups{Xattrs: []Xattr{{Path: "../../outside", Name: "user.x", Value: []byte("v")}}}
	writeJSONAtomic(filepath.Join(layerDir, layerMeta), rec)
	if _, err := s.Get(context.Background(), "oci:pre"); err == nil || !strings.Contains(err.Error(), "leaves the layer") {
		t.Errorf("escaping fixup: %v", err)
	}
}
