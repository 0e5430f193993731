package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
)

// TestMaliciousLayers applies hostile layers and checks each is refused (or,
// for an absolute name, kept inside the layer), that a canary file beside
// the store is untouched and that no file appears outside the store.
func TestMaliciousLayers(t *testing.T) {
	dir, child := inMountNS(t)
	if !child {
		return
	}
	outside := filepath.Join(dir, "outside")
	canary := filepath.Join(outside, "canary")
	os.MkdirAll(outside, 0o755)
	if err := os.WriteFile(canary, []byte("canary\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	storeRoot := filepath.Join(dir, "store")
	// From a layer root at store/layers/sha256/HEX.partial/fs, "../" * 6
	// reaches dir.
	up := strings.Repeat("../", 6)

	bomb := func() []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: 64 << 20})
		tw.Write(make([]byte, 64<<20))
		tw.Close()
		zw.Close()
		return buf.Bytes()
	}
	sparseBomb := func() []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "huge", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40})
		return buf.Bytes() // header only: the size alone must stop it
	}

	tests := []struct {
		name    string
		blob    []byte
		wantErr string // "" when the layer may apply (confined)
	}{
		{"dotdot name", makeTar(t, testEntry{name: up + "outside/escaped", body: "x"}), "leaves the layer root"},
		{"dotdot inside name", makeTar(t, testEntry{name: "a/../../" + up + "outside/escaped", body: "x"}), "leaves the layer root"},
		{"dotdot overwrite canary", makeTar(t, testEntry{name: up + "outside/canary", body: "pwned"}), "leaves the layer root"},
		{"absolute symlink then write through", makeTar(t,
			testEntry{name: "evil", typ: tar.TypeSymlink, link: outside},
			testEntry{name: "evil/canary", body: "pwned"}), "below symlink"},
		{"relative symlink then write through", makeTar(t,
			testEntry{name: "evil", typ: tar.TypeSymlink, link: up + "outside"},
			testEntry{name: "evil/escaped", body: "pwned"}), "below symlink"},
		{"nested symlink then write through", makeTar(t,
			testEntry{name: "d/", typ: tar.TypeDir},
			testEntry{name: "d/evil", typ: tar.TypeSymlink, link: "../" + up + "outside"},
			testEntry{name: "d/evil/sub/escaped", body: "pwned"}), "below symlink"},
		{"symlink to canary then overwrite", makeTar(t,
			testEntry{name: "link", typ: tar.TypeSymlink, link: canary},
			testEntry{name: "link", body: "pwned"}), ""},
		{"hardlink to outside", makeTar(t, testEntry{name: "hl", typ: tar.TypeLink, link: up + "outside/canary"}), "leaves the layer root"},
		{"hardlink to absolute outside path", makeTar(t, testEntry{name: "hl", typ: tar.TypeLink, link: canary}), "no such file"},
		{"hardlink through symlink", makeTar(t,
			testEntry{name: "evil", typ: tar.TypeSymlink, link: outside},
			testEntry{name: "hl", typ: tar.TypeLink, link: "evil/canary"}), "below symlink"},
		{"whiteout escaping", makeTar(t, testEntry{name: up + "outside/.wh.canary"}), "leaves the layer root"},
		{"whiteout escaping inside name", makeTar(t, testEntry{name: "x/../" + up + "outside/.wh.canary"}), "leaves the layer root"},
		{"whiteout through symlink", makeTar(t,
			testEntry{name: "evil", typ: tar.TypeSymlink, link: outside},
			testEntry{name: "evil/.wh.canary"}), "below symlink"},
		{"opaque marker escaping", makeTar(t, testEntry{name: up + "outside/.wh..wh..opq"}), "leaves the layer root"},
		{"absolute name stays inside", makeTar(t, testEntry{name: canary, body: "inside"}), ""},
		{"decompression bomb", bomb(), "larger than the maximum"},
		{"declared-size bomb", sparseBomb(), "larger than the maximum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.RemoveAll(storeRoot)
			before := treeOf(t, dir)
			mem := &memSource{images: map[string]*Resolved{"x": {Digest: "sha256:00", Layers: []Layer{memLayer(tt.blob, nil, nil)}}}}
			s := openStore(t, storeRoot, WithSource(TransportOCI, mem.fn), WithMaxLayerSize(1<<20))
			img, err := s.Get(context.Background(), "oci:x")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "oci:x") {
					t.Errorf("error does not name the reference: %v", err)
				}
				noLeftovers(t, storeRoot, true)
			}
			if b, rerr := os.ReadFile(canary); rerr != nil || string(b) != "canary\n" {
				t.Fatalf("canary changed: %q %v", b, rerr)
			}
			var after []string
			for _, p := range treeOf(t, dir) {
				if p != "store" && !strings.HasPrefix(p, "store/") {
					after = append(after, p)
				}
			}
			if !slices.Equal(before, after) {
				t.Fatalf("files outside the store changed:\nbefore %v\nafter  %v", before, after)
			}
			if err == nil && tt.name == "absolute name stays inside" {
				if b, _ := os.ReadFile(filepath.Join(img.Layers[0], canary)); string(b) != "inside" {
					t.Errorf("absolute entry not inside the layer")
				}
			}
		})
	}
	if !errors.Is(ErrLayerTooLarge, ErrLayerTooLarge) {
		t.Fatal()
	}
}

// TestLayerErrors checks that a broken image gives an error naming the
// reference and what is wrong, and leaves nothing in the store.
func TestLayerErrors(t *testing.T) {
	dir, child := inMountNS(t)
	if !child {
		return
	}
	good := makeTar(t, testEntry{name: "f", body: strings.Repeat("data", 1000)})
	goodGz := gzipBytes(t, good)
	tests := []struct {
		name    string
		layer   Layer
		wantErr string
	}{
		{"wrong digest", func() Layer {
			l := memLayer(goodGz, good, nil)
			l.Digest = digest.FromString("other").String()
			return l
		}(), "does not match its digest"},
		{"wrong diff ID", func() Layer {
			l := memLayer(goodGz, good, nil)
			l.DiffID = digest.FromString("other").String()
			return l
		}(), "does not match its diff ID"},
		{"truncated gzip", memLayer(goodGz[:len(goodGz)/2], nil, nil), "unexpected EOF"},
		{"truncated tar", memLayer(good[:1024], nil, nil), "unexpected EOF"},
		{"wrong size", func() Layer {
			l := memLayer(goodGz, good, nil)
			l.Size++
			return l
		}(), "the manifest says"},
		{"media type mismatch", func() Layer {
			l := memLayer(good, good, nil)
			l.MediaType = "application/vnd.oci.image.layer.v1.tar+zstd"
			return l
		}(), "says zstd"},
		{"open fails", Layer{Digest: digest.FromString("x").String(), Open: func(context.Context) (io.ReadCloser, error) {
			return nil, os.ErrNotExist
		}}, "file does not exist"},
		{"bad digest", Layer{Digest: "md5:abc"}, "layer digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(dir, "store-"+strings.ReplaceAll(tt.name, " ", "-"))
			mem := &memSource{images: map[string]*Resolved{"x": {Digest: "sha256:00", Layers: []Layer{tt.layer}}}}
			s := openStore(t, root, WithSource(TransportOCI, mem.fn))
			_, err := s.Get(context.Background(), "oci:x")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "oci:x") {
				t.Fatalf("error %v, want one naming oci:x and containing %q", err, tt.wantErr)
			}
			noLeftovers(t, root, true)
		})
	}
}

// TestDecompression applies the same layer in every supported compression.
func TestDecompression(t *testing.T) {
	dir, child := inMountNS(t)
	if !child {
		return
	}
	raw := makeTar(t, testEntry{name: "etc/", typ: tar.TypeDir}, testEntry{name: "etc/hello", body: "hello\n"})
	tests := []struct {
		name      string
		blob      []byte
		mediaType string
	}{
		{"none", raw, ""},
		{"none, OCI media type", raw, "application/vnd.oci.image.layer.v1.tar"},
		{"gzip", compressWith(t, "gzip", raw), "application/vnd.oci.image.layer.v1.tar+gzip"},
		{"gzip, Docker media type", compressWith(t, "gzip", raw), "application/vnd.docker.image.rootfs.diff.tar.gzip"},
		{"zstd", compressWith(t, "zstd", raw), "application/vnd.oci.image.layer.v1.tar+zstd"},
		{"bzip2", compressWith(t, "bzip2", raw), ""},
		{"xz", compressWith(t, "xz", raw), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := memLayer(tt.blob, raw, nil)
			l.MediaType = tt.mediaType
			mem := &memSource{images: map[string]*Resolved{"x": {Digest: "sha256:00", Layers: []Layer{l}}}}
			s := openStore(t, filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "")), WithSource(TransportOCI, mem.fn))
			img, err := s.Get(context.Background(), "oci:x")
			if err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(img.Layers[0], "etc/hello")); err != nil || string(b) != "hello\n" {
				t.Errorf("content %q %v", b, err)
			}
		})
	}
}

// compressWith compresses b with the named command-line tool (gzip, zstd,
// bzip2 and xz are in scripts/deps.sh).
func compressWith(t testing.TB, tool string, b []byte) []byte {
	t.Helper()
	out, err := runFilter(tool, b)
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return out
}
