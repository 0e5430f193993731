package image

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Store is the image store: layers unpacked once per blob digest, image
// records naming their layers, and the Sources that resolve references.
// It is safe for concurrent use, and for use by several processes sharing
// one root (flock).
type Store struct {
	root     string
	sources  map[string]SourceFunc
	platform Platform
	maxLayer int64
	log      *slog.Logger
	locks    *keyedLocks
}

// Option configures Open.
type Option func(*Store)

// WithSource registers fn as the Source constructor for a transport (one of
// the Transport constants), replacing a built-in one. The oci:,
// oci-archive: and docker-archive: transports are built in; aci: and
// registry references work once package aci and package registry are
// registered by the caller, for instance
//
//	image.Open(root, image.WithSource(image.TransportRegistry, registry.NewSource(auth)),
//		image.WithSource(image.TransportACI, aci.NewSource))
//
// which keeps this package free of imports of them (they import it).
func WithSource(transport string, fn SourceFunc) Option {
	return func(s *Store) { s.sources[transport] = fn }
}

// WithPlatform sets the platform chosen from multi-platform images
// (default DefaultPlatform()).
func WithPlatform(p Platform) Option {
	return func(s *Store) { s.platform = p }
}

// WithMaxLayerSize bounds the uncompressed size of one layer (default
// DefaultMaxLayerSize); a larger layer is refused with ErrLayerTooLarge.
func WithMaxLayerSize(n int64) Option {
	return func(s *Store) { s.maxLayer = n }
}

// WithLogger sets where the store reports what it unpacks (default:
// discarded).
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) { s.log = l }
}

// Directories of the store below its root.
const (
	layersDir = "layers"
	imagesDir = "images"
	locksDir  = "locks"
	// layerFS and layerMeta are the entries of one layer directory.
	layerFS   = "fs"
	layerMeta = "layer.json"
)

// Open opens (creating it if needed) the store at root, normally
// /var/lib/photon.
func Open(root string, opts ...Option) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", root, err)
	}
	s := &Store{
		root: abs,
		sources: map[string]SourceFunc{
			TransportOCI:           OCILayoutSource,
			TransportOCIArchive:    OCILayoutSource,
			TransportDockerArchive: DockerArchiveSource,
		},
		platform: DefaultPlatform(),
		maxLayer: DefaultMaxLayerSize,
		log:      slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(s)
	}
	for _, d := range []string{layersDir, imagesDir, locksDir} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	s.locks = newKeyedLocks(filepath.Join(abs, locksDir))
	return s, nil
}

// Root returns the store's absolute root directory.
func (s *Store) Root() string { return s.root }

// Get returns the image ref names, unpacked: the one recorded in the store
// when there is one whose layers are all present (so a second Get, and a
// boot with images preloaded into the initramfs, unpacks and reads
// nothing), otherwise what Pull makes. A rootfs: reference is the
// directory itself, never recorded.
func (s *Store) Get(ctx context.Context, ref string) (*Image, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if r.Transport == TransportRootfs {
		return rootfsImage(r)
	}
	img, err := s.loadRecord(ctx, ref)
	if err != nil {
		return nil, err
	}
	if img != nil {
		return img, nil
	}
	return s.pull(ctx, r)
}

// Pull resolves ref through its Source, unpacks the layers the store does
// not have yet and records the image, replacing an earlier record of ref.
func (s *Store) Pull(ctx context.Context, ref string) (*Image, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if r.Transport == TransportRootfs {
		return rootfsImage(r)
	}
	return s.pull(ctx, r)
}

// Resolve resolves ref through its Source without unpacking anything.
func (s *Store) Resolve(ctx context.Context, ref string) (*Resolved, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	return s.resolve(ctx, r)
}

func (s *Store) resolve(ctx context.Context, r Reference) (*Resolved, error) {
	newSource, ok := s.sources[r.Transport]
	if !ok {
		return nil, fmt.Errorf("image %s: no source for %s references in this build", r, r.Transport)
	}
	src, err := newSource(ctx, r, s.platform)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", r, err)
	}
	res, err := src.Resolve(ctx)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", r, err)
	}
	if len(res.Layers) == 0 {
		return nil, fmt.Errorf("image %s: has no layers", r)
	}
	return res, nil
}

func (s *Store) pull(ctx context.Context, r Reference) (*Image, error) {
	res, err := s.resolve(ctx, r)
	if err != nil {
		return nil, err
	}
	rec := ImageRecord{Ref: r.Raw, Digest: res.Digest, Config: res.Config}
	for _, l := range res.Layers {
		if err := s.ensureLayer(ctx, l); err != nil {
			return nil, fmt.Errorf("image %s: %w", r, err)
		}
		rec.Layers = append(rec.Layers, l.Digest)
	}
	if err := s.writeRecord(ctx, rec); err != nil {
		return nil, fmt.Errorf("image %s: %w", r, err)
	}
	return s.image(rec)
}

// rootfsImage is the image of a rootfs: reference.
func rootfsImage(r Reference) (*Image, error) {
	abs, err := filepath.Abs(r.Path)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", r, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", r, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("image %s: %s is not a directory", r, abs)
	}
	return &Image{Ref: r.Raw, Digest: digest.SHA256.FromString(abs).String(), Layers: []string{abs}}, nil
}

// ImageRecord is what the store keeps of an image, in
// ROOT/images/HEX.json (HEX the sha256 of the reference). Layers are blob
// digests, lowest first; their directories are found by LayerPath, so a
// store built elsewhere (an initramfs) works at any root.
type ImageRecord struct {
	Ref    string   `json:"ref"`
	Digest string   `json:"digest"`
	Layers []string `json:"layers"`
	Config Config   `json:"config"`
}

// RecordPath is the path of ref's record relative to the store's root.
func RecordPath(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return path.Join(imagesDir, hex.EncodeToString(sum[:])+".json")
}

// LayerPath is the directory of a layer relative to the store's root:
// "layers/ALG/HEX". It holds "fs" (the unpacked tree, an overlay lowerdir)
// and "layer.json" (a LayerRecord).
func LayerPath(dgst string) (string, error) {
	d, err := digest.Parse(dgst)
	if err != nil {
		return "", fmt.Errorf("layer digest %q: %w", dgst, err)
	}
	return path.Join(layersDir, d.Algorithm().String(), d.Encoded()), nil
}

// LayerRecord is a layer directory's layer.json.
type LayerRecord struct {
	Digest string `json:"digest"`
	DiffID string `json:"diffID,omitempty"`
	// Size is the uncompressed tar stream's size.
	Size int64 `json:"size"`
	// Opaque lists the directories (relative, slash-separated) that the
	// layer marks opaque (trusted.overlay.opaque=y).
	Opaque []string `json:"opaque,omitempty"`
	// Fixups, when set, are attributes the tree still lacks because it
	// was written where they could not be (an initramfs cpio has no
	// xattrs); the store applies them the first time it uses the layer.
	Fixups *LayerFixups `json:"fixups,omitempty"`
}

// LayerFixups are attributes to set on a layer's tree before first use.
type LayerFixups struct {
	// Opaque says the Opaque directories still need their xattr.
	Opaque bool `json:"opaque,omitempty"`
	// Xattrs are extended attributes from the layer's tar headers.
	Xattrs []Xattr `json:"xattrs,omitempty"`
}

// Xattr is one extended attribute of a path in a layer.
type Xattr struct {
	Path  string `json:"path"`
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

// image builds an Image from a record.
func (s *Store) image(rec ImageRecord) (*Image, error) {
	img := &Image{Ref: rec.Ref, Digest: rec.Digest, Config: rec.Config}
	for _, l := range rec.Layers {
		p, err := LayerPath(l)
		if err != nil {
			return nil, err
		}
		img.Layers = append(img.Layers, filepath.Join(s.root, filepath.FromSlash(p), layerFS))
	}
	return img, nil
}

// loadRecord returns the recorded image of ref, or nil when there is none
// or a layer of it is missing. Pending fixups of its layers are applied.
func (s *Store) loadRecord(ctx context.Context, ref string) (*Image, error) {
	data, err := os.ReadFile(filepath.Join(s.root, RecordPath(ref)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	var rec ImageRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Ref != ref {
		s.log.Warn("image record unreadable, pulling again", "ref", ref, "err", err)
		return nil, nil
	}
	for _, l := range rec.Layers {
		ok, err := s.haveLayer(ctx, l)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		if !ok {
			return nil, nil
		}
	}
	return s.image(rec)
}

// haveLayer reports whether the layer is unpacked, applying its pending
// fixups.
func (s *Store) haveLayer(ctx context.Context, dgst string) (bool, error) {
	rel, err := LayerPath(dgst)
	if err != nil {
		return false, err
	}
	dir := filepath.Join(s.root, filepath.FromSlash(rel))
	rec, err := readLayerRecord(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("layer %s: %w", dgst, err)
	}
	if rec.Fixups == nil {
		return true, nil
	}
	unlock, err := s.locks.lock(ctx, dgst)
	if err != nil {
		return false, err
	}
	defer unlock()
	if rec, err = readLayerRecord(dir); err != nil {
		return false, fmt.Errorf("layer %s: %w", dgst, err)
	}
	if rec.Fixups == nil {
		return true, nil
	}
	if err := applyFixups(filepath.Join(dir, layerFS), rec); err != nil {
		return false, fmt.Errorf("layer %s: %w", dgst, err)
	}
	rec.Fixups = nil
	if err := writeJSONAtomic(filepath.Join(dir, layerMeta), rec); err != nil {
		return false, fmt.Errorf("layer %s: %w", dgst, err)
	}
	s.log.Info("applied layer fixups", "layer", dgst)
	return true, nil
}

func readLayerRecord(dir string) (*LayerRecord, error) {
	data, err := os.ReadFile(filepath.Join(dir, layerMeta))
	if err != nil {
		return nil, err
	}
	var rec LayerRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, layerMeta), err)
	}
	return &rec, nil
}

// applyFixups sets the opaque and other xattrs a layer record lists,
// refusing paths that leave the tree.
func applyFixups(root string, rec *LayerRecord) error {
	set := func(rel, name string, value []byte) error {
		p, err := inRoot(root, rel)
		if err != nil {
			return err
		}
		if err := unix.Lsetxattr(p, name, value, 0); err != nil {
			return fmt.Errorf("set %s on %s: %w", name, p, err)
		}
		return nil
	}
	if rec.Fixups.Opaque {
		for _, d := range rec.Opaque {
			if err := set(d, opaqueXattr, []byte{'y'}); err != nil {
				return err
			}
		}
	}
	for _, x := range rec.Fixups.Xattrs {
		if strings.HasPrefix(x.Name, "trusted.") {
			return fmt.Errorf("xattr %s on %s: trusted.* attributes are not taken from layers", x.Name, x.Path)
		}
		if err := set(x.Path, x.Name, x.Value); err != nil {
			return err
		}
	}
	return nil
}

// inRoot joins a relative path of a layer tree to its root, refusing one
// that leaves it or passes through a symlink.
func inRoot(root, rel string) (string, error) {
	c := path.Clean(rel)
	if path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("path %q leaves the layer", rel)
	}
	p := filepath.Join(root, filepath.FromSlash(c))
	for dir := filepath.Dir(p); len(dir) > len(root); dir = filepath.Dir(dir) {
		fi, err := os.Lstat(dir)
		if err != nil {
			return "", err
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("path %q passes through a non-directory", rel)
		}
	}
	return p, nil
}

// writeRecord writes an image record atomically.
func (s *Store) writeRecord(ctx context.Context, rec ImageRecord) error {
	rel := RecordPath(rec.Ref)
	unlock, err := s.locks.lock(ctx, "image-"+path.Base(rel))
	if err != nil {
		return err
	}
	defer unlock()
	return writeJSONAtomic(filepath.Join(s.root, rel), rec)
}

// writeJSONAtomic writes v as JSON to a temporary file beside p, syncs
// it and renames it over p, then syncs the directory.
func writeJSONAtomic(p string, v any) (err error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	f, err := os.CreateTemp(dir, "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err = os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("rename %s: %w", p, err)
	}
	return syncDir(dir)
}

// syncFS flushes the filesystem holding dir (syncfs(2)): every file just
// unpacked there, in one call.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// syncDir fsyncs a directory so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// opaqueXattr marks an overlayfs directory opaque.
const opaqueXattr = "trusted.overlay.opaque"

// ensureLayer unpacks l unless the store has it. It works in
// layers/ALG/HEX.partial under the layer's lock and renames that into
// place only when the tree is complete and the blob's digest (and DiffID)
// verified; a .partial left by a crash is removed first.
func (s *Store) ensureLayer(ctx context.Context, l Layer) error {
	ok, err := s.haveLayer(ctx, l.Digest)
	if err != nil || ok {
		return err
	}
	rel, err := LayerPath(l.Digest)
	if err != nil {
		return err
	}
	unlock, err := s.locks.lock(ctx, l.Digest)
	if err != nil {
		return err
	}
	defer unlock()
	final := filepath.Join(s.root, filepath.FromSlash(rel))
	if _, err := os.Stat(filepath.Join(final, layerMeta)); err == nil {
		return nil // unpacked by someone else meanwhile
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	partial := final + ".partial"
	if err := os.RemoveAll(partial); err != nil {
		return fmt.Errorf("layer %s: remove leftover %s: %w", l.Digest, partial, err)
	}
	if err := os.RemoveAll(final); err != nil { // a directory without layer.json is incomplete
		return fmt.Errorf("layer %s: remove incomplete %s: %w", l.Digest, final, err)
	}
	if err := s.unpack(ctx, l, partial); err != nil {
		if rerr := os.RemoveAll(partial); rerr != nil {
			s.log.Error("remove failed layer", "dir", partial, "err", rerr)
		}
		return err
	}
	// The layer's files reach the disk before the rename makes the layer
	// count as complete: after a power cut a layer is either whole or
	// absent, never present with empty files.
	if err := syncFS(partial); err != nil {
		os.RemoveAll(partial)
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	if err := os.Rename(partial, final); err != nil {
		os.RemoveAll(partial)
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	return syncDir(filepath.Dir(final))
}

// unpack applies l into dir/fs and writes dir/layer.json.
func (s *Store) unpack(ctx context.Context, l Layer, dir string) error {
	root := filepath.Join(dir, layerFS)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	st, err := openLayer(ctx, l, s.maxLayer)
	if err != nil {
		return err
	}
	defer st.Close()
	filter := &entryFilter{layer: l.Digest, prefix: l.PathPrefix, max: s.maxLayer}
	var opaque []string
	convert := func(h *tar.Header, p string) (bool, error) {
		if filepath.Base(p) == whiteoutOpaque {
			rel, err := filepath.Rel(root, filepath.Dir(p))
			if err != nil {
				return false, err
			}
			opaque = append(opaque, filepath.ToSlash(rel))
		}
		return archive.OverlayConvertWhiteout(h, p)
	}
	if _, err := archive.Apply(withArchiveLogger(ctx, s.log, l.Digest), root, st,
		archive.WithFilter(filter.check),
		archive.WithConvertWhiteout(convert),
	); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("unpack layer %s: data ends early (truncated blob?): %w", l.Digest, err)
		}
		return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	if err := st.finish(); err != nil {
		return err
	}
	rec := LayerRecord{Digest: l.Digest, DiffID: l.DiffID, Size: st.tarSize, Opaque: opaque}
	if err := writeJSONAtomic(filepath.Join(dir, layerMeta), rec); err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	s.log.Info("unpacked layer", "layer", l.Digest, "bytes", st.tarSize)
	return nil
}
