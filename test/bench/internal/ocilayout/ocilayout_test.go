package ocilayout

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/photon-init/photon-init/pkg/containers/image"
)

// TestLayoutPulls writes a two-layer layout and has photon-init's image
// store pull it: the layout, its digests and DiffIDs are what a real
// image's are.
func TestLayoutPulls(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	var layers []Layer
	for _, files := range [][]File{
		{{Name: "bin/", Dir: true, Mode: 0o755}, {Name: "bin/tool", Mode: 0o755, Data: []byte("#!/bin/sh\n")}},
		{{Name: "bin/sh", Link: "tool", Mode: 0o777}, {Name: "etc/", Dir: true, Mode: 0o755}, {Name: "etc/motd", Mode: 0o644, Data: []byte("hi\n")}},
	} {
		l, err := w.Layer(gzip.BestSpeed, Files(files))
		if err != nil {
			t.Fatal(err)
		}
		if l.TarSize == 0 || l.Desc.Size == 0 {
			t.Fatalf("layer sizes: %+v", l)
		}
		layers = append(layers, l)
	}
	if err := w.Finish("latest", ocispec.ImageConfig{Env: []string{"PATH=/bin"}}, layers); err != nil {
		t.Fatal(err)
	}
	s, err := image.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Pull(context.Background(), "oci:"+dir+":latest")
	if err != nil {
		t.Fatalf("pulling the layout: %v", err)
	}
	if len(img.Layers) != 2 {
		t.Fatalf("%d layers, want 2", len(img.Layers))
	}
	got, err := os.ReadFile(filepath.Join(img.Layers[1], "etc", "motd"))
	if err != nil || string(got) != "hi\n" {
		t.Fatalf("etc/motd in the top layer: %q, %v", got, err)
	}
	if link, err := os.Readlink(filepath.Join(img.Layers[1], "bin", "sh")); err != nil || link != "tool" {
		t.Fatalf("bin/sh: %q, %v", link, err)
	}
}
