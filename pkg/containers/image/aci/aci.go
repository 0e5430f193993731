package aci

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strings"

	"github.com/klauspost/compress/gzip"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/ulikunitz/xz"

	"github.com/photon-init/photon-init/pkg/containers/image"
)

const (
	// manifestName is the image manifest's entry in the archive.
	manifestName = "manifest"
	// rootfsDir is the entry holding the root filesystem.
	rootfsDir = "rootfs"
	// PathPrefix is the prefix of the rootfs entries, the layer's
	// image.Layer.PathPrefix.
	PathPrefix = rootfsDir + "/"
	// maxManifestSize bounds the image manifest read into memory.
	maxManifestSize = 1 << 20
)

// source is an ACI file.
type source struct {
	path string
	// goarch is the architecture the image must run on (GOARCH names).
	goarch string
}

// New returns the image source for the ACI file at path, for this
// machine's architecture. The file is read by Resolve, not here; New only
// checks that it is a regular file.
func New(path string) (image.Source, error) {
	return newSource(path, runtime.GOARCH)
}

// NewSource is New as an image.SourceFunc for the store's "aci:"
// references (image.WithSource(image.TransportACI, aci.NewSource)): the
// ACI is ref.Path and its arch label must suit p.
func NewSource(_ context.Context, ref image.Reference, p image.Platform) (image.Source, error) {
	if p.OS != "" && p.OS != "linux" {
		return nil, fmt.Errorf("ACI %s: platform %s: only linux images are supported", ref.Path, p)
	}
	goarch := p.Architecture
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	return newSource(ref.Path, goarch)
}

func newSource(path, goarch string) (image.Source, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("ACI: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("ACI %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	return &source{path: path, goarch: goarch}, nil
}

// Resolve reads the ACI: its manifest becomes the image's config, the
// whole uncompressed archive its only layer, and the archive's SHA-512 (the
// appc image ID) the image's digest.
func (s *source) Resolve(ctx context.Context) (*image.Resolved, error) {
	res, err := s.resolve(ctx)
	if err != nil {
		return nil, fmt.Errorf("ACI %s: %w", s.path, err)
	}
	return res, nil
}

func (s *source) resolve(ctx context.Context) (*image.Resolved, error) {
	rc, compression, err := open(ctx, s.path)
	if err != nil {
		return nil, err
	}
	defer rc.Close()

	h := sha512.New()
	var size countWriter
	tee := io.TeeReader(rc, io.MultiWriter(h, &size))
	manifest, err := scan(tar.NewReader(tee), compression)
	if err != nil {
		return nil, err
	}
	// The image ID covers the whole file, the padding after the tar's end
	// blocks included.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	_, cfg, err := parseManifest(manifest, s.goarch)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	digest := "sha512:" + hex.EncodeToString(h.Sum(nil))
	file := s.path
	return &image.Resolved{
		Digest: digest,
		Config: cfg,
		Layers: []image.Layer{{
			Digest:     digest,
			MediaType:  ocispec.MediaTypeImageLayer,
			Size:       int64(size),
			PathPrefix: PathPrefix,
			Open: func(ctx context.Context) (io.ReadCloser, error) {
				rc, _, err := open(ctx, file)
				if err != nil {
					return nil, fmt.Errorf("ACI %s: %w", file, err)
				}
				return rc, nil
			},
		}},
	}, nil
}

// scan reads every entry of the archive, checks its name and returns the
// image manifest.
func scan(tr *tar.Reader, compression string) ([]byte, error) {
	var manifest []byte
	var hasRootfs bool
	for first := true; ; first = false {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if first {
				return nil, fmt.Errorf("not a tar archive (%s): %w", compression, err)
			}
			return nil, fmt.Errorf("read tar: %w", err)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return nil, err
		}
		switch {
		case name == ".":
		case name == manifestName:
			if manifest != nil {
				return nil, fmt.Errorf("entry %q: a second manifest", hdr.Name)
			}
			if hdr.Typeflag != tar.TypeReg {
				return nil, fmt.Errorf("entry %q: the manifest is not a regular file", hdr.Name)
			}
			if hdr.Size > maxManifestSize {
				return nil, fmt.Errorf("entry %q: manifest of %d bytes is larger than 1 MiB", hdr.Name, hdr.Size)
			}
			if manifest, err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("read manifest: %w", err)
			}
			if manifest == nil {
				manifest = []byte{}
			}
		case name == rootfsDir:
			if hdr.Typeflag != tar.TypeDir {
				return nil, fmt.Errorf("entry %q: rootfs is not a directory", hdr.Name)
			}
			hasRootfs = true
		case strings.HasPrefix(name, PathPrefix):
			hasRootfs = true
			if hdr.Typeflag == tar.TypeLink {
				target, err := entryName(hdr.Linkname)
				if err != nil || !strings.HasPrefix(target, PathPrefix) {
					return nil, fmt.Errorf("entry %q: hard link to %q, outside rootfs/", hdr.Name, hdr.Linkname)
				}
			}
		default:
			return nil, fmt.Errorf("entry %q: an ACI holds only manifest and rootfs/", hdr.Name)
		}
	}
	switch {
	case manifest == nil:
		return nil, errors.New("no manifest in the archive")
	case !hasRootfs:
		return nil, errors.New("no rootfs in the archive")
	}
	return manifest, nil
}

// entryName cleans an archive entry's name ("./rootfs//bin" is
// "rootfs/bin") and refuses names that leave the archive's root.
func entryName(name string) (string, error) {
	clean := path.Clean(strings.TrimPrefix(name, "./"))
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("entry %q: path leaves the archive", name)
	}
	return clean, nil
}

// open opens the ACI at file and returns its uncompressed tar stream, which
// fails with ctx's error once ctx is done, and the name of the
// compression.
func open(ctx context.Context, file string) (io.ReadCloser, string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, "", err
	}
	r, compression, err := decompress(bufio.NewReaderSize(ctxReader{ctx, f}, 64<<10))
	if err != nil {
		f.Close()
		return nil, "", err
	}
	return readCloser{Reader: r, close: f.Close}, compression, nil
}

// Magic numbers of the compressions appc allows.
var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicBzip2 = []byte("BZh")
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
)

// decompress returns the uncompressed stream of br, telling the
// compression from the first bytes, and the compression's name.
func decompress(br *bufio.Reader) (io.Reader, string, error) {
	head, err := br.Peek(len(magicXz))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "", fmt.Errorf("read: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, magicGzip):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("gzip: %w", err)
		}
		return zr, "gzip", nil
	case bytes.HasPrefix(head, magicBzip2):
		return bzip2.NewReader(br), "bzip2", nil
	case bytes.HasPrefix(head, magicXz):
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("xz: %w", err)
		}
		return zr, "xz", nil
	}
	return br, "uncompressed", nil
}

// ctxReader fails reads once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// readCloser is a decompressing reader and the close of its file.
type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// countWriter counts the bytes written to it.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
