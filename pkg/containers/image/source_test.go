package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/photon-init/photon-init/internal/testimage"
)

func TestParseReference(t *testing.T) {
	tests := []struct {
		in        string
		transport string
		path, tag string
		named     string
		wantErr   string
	}{
		{in: "oci:/images/app", transport: TransportOCI, path: "/images/app"},
		{in: "oci:/images/app:1.0", transport: TransportOCI, path: "/images/app", tag: "1.0"},
		{in: "oci:rel/dir:example.com/app:1", transport: TransportOCI, path: "rel/dir", tag: "example.com/app:1"},
		{in: "oci-archive:/x.tar:latest", transport: TransportOCIArchive, path: "/x.tar", tag: "latest"},
		{in: "docker-archive:/x.tar", transport: TransportDockerArchive, path: "/x.tar"},
		{in: "docker-archive:/x.tar:app:1.0", transport: TransportDockerArchive, path: "/x.tar", tag: "docker.io/library/app:1.0"},
		{in: "docker-archive:/x.tar:app", transport: TransportDockerArchive, path: "/x.tar", tag: "docker.io/library/app:latest"},
		{in: "docker-archive:/x.tar:@1", transport: TransportDockerArchive, path: "/x.tar", tag: "@1"},
		{in: "aci:/images/app.aci", transport: TransportACI, path: "/images/app.aci"},
		{in: "rootfs:/srv/root", transport: TransportRootfs, path: "/srv/root"},
		{in: "host:5000/app:1.0", transport: TransportRegistry, named: "host:5000/app:1.0"},
		{in: "docker.io/library/x:tag", transport: TransportRegistry, named: "docker.io/library/x:tag"},
		{in: "x:tag", transport: TransportRegistry, named: "docker.io/library/x:tag"},
		{in: "x", transport: TransportRegistry, named: "docker.io/library/x:latest"},
		{in: "localhost/app", transport: TransportRegistry, named: "localhost/app:latest"},
		{in: "docker://ghcr.io/o/app:2", transport: TransportRegistry, named: "ghcr.io/o/app:2"},
		{in: "x@sha256:" + strings.Repeat("a", 64), transport: TransportRegistry, named: "docker.io/library/x@sha256:" + strings.Repeat("a", 64)},
		{in: "", wantErr: "empty"},
		{in: "oci:", wantErr: "no path"},
		{in: "rootfs:/a:b", wantErr: "takes a path only"},
		{in: "docker-archive:/x.tar:Bad Name", wantErr: "image name"},
		{in: "app//x:1", wantErr: "local images are written"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseReference(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			named := ""
			if r.Named != nil {
				named = r.Named.String()
			}
			if r.Transport != tt.transport || r.Path != tt.path || r.Tag != tt.tag || named != tt.named || r.String() != tt.in {
				t.Errorf("got %s %q %q %q %q", r.Transport, r.Path, r.Tag, named, r.String())
			}
		})
	}
}

func TestSelectManifest(t *testing.T) {
	d := func(name, os, arch, variant string) ocispec.Descriptor {
		return ocispec.Descriptor{Digest: digest.Digest("sha256:" + name), Platform: &ocispec.Platform{OS: os, Architecture: arch, Variant: variant}}
	}
	index := []ocispec.Descriptor{
		d("arm6", "linux", "arm", "v6"), d("arm7", "linux", "arm", "v7"), d("arm64", "linux", "arm64", ""),
		d("amd64", "linux", "amd64", ""), d("amd64v3", "linux", "amd64", "v3"), d("att", "unknown", "unknown", ""),
		d("win", "windows", "amd64", ""),
	}
	tests := []struct {
		p       Platform
		list    []ocispec.Descriptor
		want    string
		wantErr string
	}{
		{Platform{"linux", "amd64", "v1"}, index, "amd64", ""},
		{Platform{"linux", "amd64", "v3"}, index, "amd64v3", ""},
		{Platform{"linux", "arm", "v7"}, index, "arm7", ""},
		{Platform{"linux", "arm", "v6"}, index, "arm6", ""},
		{Platform{"linux", "arm", "v5"}, index, "", "no image for platform linux/arm/v5"},
		{Platform{"linux", "arm64", "v8"}, index, "arm64", ""},
		{Platform{"linux", "riscv64", ""}, index, "", "the index has linux/arm/v6"},
		{Platform{"linux", "amd64", "v1"}, []ocispec.Descriptor{{Digest: "sha256:noplatform"}}, "noplatform", ""},
	}
	for _, tt := range tests {
		t.Run(tt.p.String(), func(t *testing.T) {
			got, err := SelectManifest(tt.list, tt.p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got.Digest) != "sha256:"+tt.want {
				t.Fatalf("got %s %v, want %s", got.Digest, err, tt.want)
			}
		})
	}
	if p := DefaultPlatform(); p.OS != "linux" || p.Architecture == "" {
		t.Errorf("DefaultPlatform %v", p)
	}
}

// copyTree copies a directory with cp -a.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

// layerBlob returns the path of the first layer blob of a tag in a layout.
func layerBlob(t testing.TB, layout, tag string) string {
	t.Helper()
	var idx ocispec.Index
	readJSONFile(t, filepath.Join(layout, "index.json"), &idx)
	for _, m := range idx.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] == tag {
			var man ocispec.Manifest
			readJSONFile(t, filepath.Join(layout, "blobs/sha256", m.Digest.Encoded()), &man)
			return filepath.Join(layout, "blobs/sha256", man.Layers[0].Digest.Encoded())
		}
	}
	t.Fatalf("no tag %s", tag)
	return ""
}

func readJSONFile(t testing.TB, p string, v any) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// TestSourceErrors breaks copies of the test images and checks the errors
// name the reference and the problem, and leave nothing in the store.
func TestSourceErrors(t *testing.T) {
	dir, child := inMountNS(t)
	if !child {
		return
	}
	im := testimage.Build(t, "")
	tests := []struct {
		name    string
		ref     func(work string) string
		wantErr string
	}{
		{"missing layout", func(w string) string { return "oci:" + filepath.Join(w, "nope") + ":latest" }, "no such file"},
		{"missing archive", func(w string) string { return "docker-archive:" + filepath.Join(w, "nope.tar") }, "no such file"},
		{"missing tag", func(string) string { return im.OCIRef() + "-nope" }, `no image tagged "latest-nope" (tags: latest, multi)`},
		{"missing archive tag", func(string) string { return im.OCIArchiveRef() + "-nope" }, `no image tagged "latest-nope"`},
		{"missing docker name", func(string) string { return "docker-archive:" + im.DockerArchive + ":other:1" }, `no image named "docker.io/library/other:1"`},
		{"docker index out of range", func(string) string { return "docker-archive:" + im.DockerArchive + ":@3" }, "no image @3"},
		{"wrong transport for a directory", func(string) string { return "oci-archive:" + im.OCILayout }, "is a directory"},
		{"not a layout", func(w string) string { return "oci:" + w }, "not an OCI image layout"},
		{"wrong layer digest", func(w string) string {
			l := filepath.Join(w, "bad")
			copyTree(t, im.OCILayout, l)
			blob := layerBlob(t, l, testimage.Tag)
			b, _ := os.ReadFile(blob)
			// Change the gzip header's mtime: still valid gzip, different digest.
			b[4] ^= 0xff
			os.Remove(blob)
			os.WriteFile(blob, b, 0o644)
			return "oci:" + l + ":" + testimage.Tag
		}, "does not match its digest"},
		{"truncated layer", func(w string) string {
			l := filepath.Join(w, "short")
			copyTree(t, im.OCILayout, l)
			blob := layerBlob(t, l, testimage.Tag)
			fi, _ := os.Stat(blob)
			os.Truncate(blob, fi.Size()/2)
			return "oci:" + l + ":" + testimage.Tag
		}, "unexpected EOF"},
		{"missing layer blob", func(w string) string {
			l := filepath.Join(w, "noblob")
			copyTree(t, im.OCILayout, l)
			os.Remove(layerBlob(t, l, testimage.Tag))
			return "oci:" + l + ":" + testimage.Tag
		}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			work := filepath.Join(dir, "work-"+strings.ReplaceAll(tt.name, " ", "-"))
			os.MkdirAll(work, 0o755)
			ref := tt.ref(work)
			root := filepath.Join(dir, "store-"+strings.ReplaceAll(tt.name, " ", "-"))
			s := openStore(t, root)
			_, err := s.Get(context.Background(), ref)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), ref) {
				t.Fatalf("error %v\nwant one naming %s and containing %q", err, ref, tt.wantErr)
			}
			t.Log(err)
			noLeftovers(t, root, true)
		})
	}
}

// writeBlob stores data in a layout's blobs and returns its descriptor.
func writeBlob(t testing.TB, layout, mediaType string, data []byte, p *ocispec.Platform) ocispec.Descriptor {
	t.Helper()
	d := digest.FromBytes(data)
	dir := filepath.Join(layout, "blobs", "sha256")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, d.Encoded()), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data)), Platform: p}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOCILayoutPlatforms resolves a multi-platform image in an OCI layout
// (index.json → image index → per-platform manifests).
func TestOCILayoutPlatforms(t *testing.T) {
	dir, child := inMountNS(t)
	if !child {
		return
	}
	layout := filepath.Join(dir, "layout")
	var manifests []ocispec.Descriptor
	for _, arch := range []string{"arm64", "amd64", "riscv64"} {
		layer := makeTar(t, testEntry{name: "arch", body: arch})
		ld := writeBlob(t, layout, ocispec.MediaTypeImageLayer, layer, nil)
		cfg := writeBlob(t, layout, ocispec.MediaTypeImageConfig, mustJSON(t, map[string]any{
			"architecture": arch, "os": "linux",
			"config": map[string]any{"Cmd": []string{"/" + arch}},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{ld.Digest.String()}},
		}), nil)
		m := writeBlob(t, layout, ocispec.MediaTypeImageManifest, mustJSON(t, ocispec.Manifest{
			Versioned: ocispecVersioned(), MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{ld},
		}), &ocispec.Platform{OS: "linux", Architecture: arch})
		manifests = append(manifests, m)
	}
	idx := writeBlob(t, layout, ocispec.MediaTypeImageIndex, mustJSON(t, ocispec.Index{
		Versioned: ocispecVersioned(), MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests,
	}), nil)
	idx.Annotations = map[string]string{ocispec.AnnotationRefName: "v1"}
	os.WriteFile(filepath.Join(layout, "index.json"), mustJSON(t, ocispec.Index{Versioned: ocispecVersioned(), Manifests: []ocispec.Descriptor{idx}}), 0o644)
	os.WriteFile(filepath.Join(layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)

	tests := []struct {
		p       Platform
		want    string
		wantErr string
	}{
		{Platform{"linux", "amd64", "v1"}, "amd64", ""},
		{Platform{"linux", "arm64", "v8"}, "arm64", ""},
		{Platform{"linux", "riscv64", ""}, "riscv64", ""},
		{Platform{"linux", "s390x", ""}, "", "no image for platform linux/s390x"},
	}
	for _, tt := range tests {
		t.Run(tt.p.String(), func(t *testing.T) {
			s := openStore(t, filepath.Join(dir, "store-"+tt.p.Architecture), WithPlatform(tt.p))
			img, err := s.Get(context.Background(), "oci:"+layout+":v1")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(img.Layers[0], "arch"))
			if string(b) != tt.want || img.Config.Cmd[0] != "/"+tt.want {
				t.Errorf("got layer %q cmd %v, want %s", b, img.Config.Cmd, tt.want)
			}
		})
	}
}

// TestPathPrefix checks that a layer's PathPrefix (an ACI's "rootfs/") is
// stripped and entries outside it skipped.
func TestPathPrefix(t *testing.T) {
	dir, child := inMountNS(t)
	if !child {
		return
	}
	blob := makeTar(t,
		testEntry{name: "manifest", body: "{}"},
		testEntry{name: "rootfs", typ: tar.TypeDir},
		testEntry{name: "rootfs/etc/", typ: tar.TypeDir},
		testEntry{name: "rootfs/etc/hostname", body: "aci\n"},
		testEntry{name: "rootfs/etc/link", typ: tar.TypeLink, link: "rootfs/etc/hostname"},
	)
	l := memLayer(blob, nil, nil)
	l.PathPrefix = "rootfs"
	mem := &memSource{images: map[string]*Resolved{"x": {Digest: "sha256:00", Layers: []Layer{l}}}}
	s := openStore(t, filepath.Join(dir, "store"), WithSource(TransportACI, mem.fn))
	img, err := s.Get(context.Background(), "aci:x")
	if err != nil {
		t.Fatal(err)
	}
	if got := treeOf(t, img.Layers[0]); !slices.Equal(got, []string{".", "etc", "etc/hostname", "etc/link"}) {
		t.Errorf("tree %v", got)
	}
	a, _ := os.Stat(filepath.Join(img.Layers[0], "etc/hostname"))
	b, _ := os.Stat(filepath.Join(img.Layers[0], "etc/link"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Error("hardlink inside the prefix not kept")
	}
	bad := makeTar(t, testEntry{name: "rootfs/x", typ: tar.TypeLink, link: "manifest"})
	l = memLayer(bad, nil, nil)
	l.PathPrefix = "rootfs"
	mem.images["bad"] = &Resolved{Digest: "sha256:01", Layers: []Layer{l}}
	if _, err := s.Get(context.Background(), "aci:bad"); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("hardlink out of the prefix: %v", err)
	}
}

func ocispecVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }
