// Package ocilayout writes OCI image layouts for the benchmark: small
// images of a few files (the busybox tools image the memory and scale
// sections boot) and large generated ones (the unpack section's 200 MB
// image), with blobs streamed to disk rather than held in memory.
//
// test/vm's BuildServerImage writes the server image in memory; this
// package is the streaming form the large image needs.
package ocilayout

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer is a layer blob written to a layout.
type Layer struct {
	// Desc describes the compressed blob.
	Desc ocispec.Descriptor
	// DiffID is the digest of the uncompressed tar.
	DiffID digest.Digest
	// TarSize is the size of the uncompressed tar.
	TarSize int64
}

// Writer writes one image layout directory.
type Writer struct {
	dir string
}

// Create empties dir and starts a layout there.
func Create(dir string) (*Writer, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	err := os.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	if err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	return &Writer{dir: dir}, nil
}

// Dir is the layout's directory.
func (w *Writer) Dir() string { return w.dir }

// BlobPath is where the blob of d is in the layout.
func (w *Writer) BlobPath(d digest.Digest) string {
	return filepath.Join(w.dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// Blob streams r into a blob of the given media type.
func (w *Writer) Blob(mediaType string, r io.Reader) (ocispec.Descriptor, error) {
	tmp, err := os.CreateTemp(filepath.Join(w.dir, "blobs"), "blob-")
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("blob: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("blob: %w", err)
	}
	d := digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
	if err := os.Rename(tmp.Name(), w.BlobPath(d)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("blob: %w", err)
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: n}, nil
}

// jsonBlob stores v as a JSON blob.
func (w *Writer) jsonBlob(mediaType string, v any) (ocispec.Descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode %s: %w", mediaType, err)
	}
	return w.Blob(mediaType, bytes.NewReader(data))
}

// Layer writes a gzip-compressed tar layer whose entries fill writes
// (gzip level: compression level, e.g. gzip.DefaultCompression).
func (w *Writer) Layer(level int, fill func(tw *tar.Writer) error) (Layer, error) {
	pr, pw := io.Pipe()
	diff := sha256.New()
	var tarSize int64
	go func() {
		zw, err := gzip.NewWriterLevel(pw, level)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		cw := &countWriter{w: io.MultiWriter(zw, diff)}
		tw := tar.NewWriter(cw)
		err = fill(tw)
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			err = zw.Close()
		}
		tarSize = cw.n
		pw.CloseWithError(err)
	}()
	desc, err := w.Blob(ocispec.MediaTypeImageLayerGzip, pr)
	pr.CloseWithError(err) // lets the writer goroutine end if Blob failed
	if err != nil {
		return Layer{}, fmt.Errorf("layer: %w", err)
	}
	return Layer{Desc: desc, DiffID: digest.NewDigestFromBytes(digest.SHA256, diff.Sum(nil)), TarSize: tarSize}, nil
}

// Finish writes the image's config, manifest and index, tagging the
// manifest tag.
func (w *Writer) Finish(tag string, cfg ocispec.ImageConfig, layers []Layer) error {
	var diffIDs []digest.Digest
	var descs []ocispec.Descriptor
	for _, l := range layers {
		diffIDs = append(diffIDs, l.DiffID)
		descs = append(descs, l.Desc)
	}
	config, err := w.jsonBlob(ocispec.MediaTypeImageConfig, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   cfg,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	})
	if err != nil {
		return err
	}
	manifest, err := w.jsonBlob(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config,
		Layers:    descs,
	})
	if err != nil {
		return err
	}
	manifest.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifest},
	})
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, ocispec.ImageIndexFile), index, 0o644); err != nil {
		return fmt.Errorf("layout %s: %w", w.dir, err)
	}
	return nil
}

// countWriter counts what passes through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// File is a file to put in a small layer.
type File struct {
	// Name is the path in the image, without a leading slash.
	Name string
	// Mode holds the permission bits.
	Mode int64
	// Data is a regular file's content.
	Data []byte
	// Link makes the entry a symbolic link to Link.
	Link string
	// Dir makes the entry a directory.
	Dir bool
}

// Files returns a layer filler writing files in order.
func Files(files []File) func(tw *tar.Writer) error {
	return func(tw *tar.Writer) error {
		for _, f := range files {
			h := &tar.Header{Name: f.Name, Mode: f.Mode, Typeflag: tar.TypeReg, Size: int64(len(f.Data))}
			switch {
			case f.Dir:
				h.Typeflag, h.Size = tar.TypeDir, 0
			case f.Link != "":
				h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, f.Link, 0
			}
			if err := tw.WriteHeader(h); err != nil {
				return fmt.Errorf("tar %s: %w", f.Name, err)
			}
			if h.Typeflag == tar.TypeReg {
				if _, err := tw.Write(f.Data); err != nil {
					return fmt.Errorf("tar %s: %w", f.Name, err)
				}
			}
		}
		return nil
	}
}
