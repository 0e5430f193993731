package image

import (
	"archive/tar"
	"context"
	_ "crypto/sha256" // digest algorithms for go-digest
	_ "crypto/sha512"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
)

// DefaultMaxLayerSize bounds the uncompressed size of one layer (its tar
// stream and the sum of its entries' sizes) unless WithMaxLayerSize says
// otherwise: a decompression bomb stops there.
const DefaultMaxLayerSize int64 = 16 << 30

// Whiteout names of the OCI layer format.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// ErrLayerTooLarge is returned when a layer unpacks to more than the
// store's maximum layer size.
var ErrLayerTooLarge = errors.New("layer is larger than the maximum unpacked layer size")

// layerStream reads one layer blob, decompressed, hashing the blob and the
// uncompressed tar as it goes; finish checks them.
type layerStream struct {
	layer    Layer
	rc       io.ReadCloser
	blob     digest.Verifier
	diff     digest.Verifier
	blobSize *countReader
	dec      *decompressor
	tarSize  int64
	max      int64
}

// openLayer opens l's blob for reading its tar stream, at most max
// uncompressed bytes.
func openLayer(ctx context.Context, l Layer, max int64) (*layerStream, error) {
	bd, err := digest.Parse(l.Digest)
	if err != nil {
		return nil, fmt.Errorf("layer digest %q: %w", l.Digest, err)
	}
	s := &layerStream{layer: l, blob: bd.Verifier(), max: max}
	if l.DiffID != "" {
		dd, err := digest.Parse(l.DiffID)
		if err != nil {
			return nil, fmt.Errorf("layer %s: diff ID %q: %w", l.Digest, l.DiffID, err)
		}
		s.diff = dd.Verifier()
	}
	if l.Open == nil {
		return nil, fmt.Errorf("layer %s: source gives no way to open it", l.Digest)
	}
	if s.rc, err = l.Open(ctx); err != nil {
		return nil, fmt.Errorf("open layer %s: %w", l.Digest, err)
	}
	s.blobSize = &countReader{r: io.TeeReader(s.rc, s.blob)}
	if s.dec, err = newDecompressor(s.blobSize, l.MediaType); err != nil {
		s.rc.Close()
		return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	return s, nil
}

// Read reads the uncompressed tar stream.
func (s *layerStream) Read(p []byte) (int, error) {
	if s.tarSize >= s.max {
		// Read nothing more; one more byte proves the excess.
		var one [1]byte
		if _, err := io.ReadFull(s.dec, one[:]); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("layer %s: %w (%d bytes)", s.layer.Digest, ErrLayerTooLarge, s.max)
	}
	if int64(len(p)) > s.max-s.tarSize {
		p = p[:s.max-s.tarSize]
	}
	n, err := s.dec.Read(p)
	s.tarSize += int64(n)
	if s.diff != nil {
		s.diff.Write(p[:n])
	}
	return n, err
}

// finish reads what is left after the tar's end and checks the blob's
// digest and size and the DiffID.
func (s *layerStream) finish() error {
	if _, err := io.Copy(io.Discard, s); err != nil {
		return fmt.Errorf("layer %s: %w", s.layer.Digest, err)
	}
	// The compressed blob may carry bytes after the compressed stream.
	if _, err := io.Copy(io.Discard, s.blobSize); err != nil {
		return fmt.Errorf("layer %s: read: %w", s.layer.Digest, err)
	}
	if s.layer.Size >= 0 && s.layer.Size != 0 && s.blobSize.n != s.layer.Size {
		return fmt.Errorf("layer %s: blob is %d bytes, the manifest says %d", s.layer.Digest, s.blobSize.n, s.layer.Size)
	}
	if !s.blob.Verified() {
		return fmt.Errorf("layer %s: blob content does not match its digest (corrupt or truncated)", s.layer.Digest)
	}
	if s.diff != nil && !s.diff.Verified() {
		return fmt.Errorf("layer %s: uncompressed content does not match its diff ID %s", s.layer.Digest, s.layer.DiffID)
	}
	return nil
}

// Close releases the blob and the decoder.
func (s *layerStream) Close() {
	s.dec.Close()
	s.rc.Close()
}

// entryFilter checks every tar header of a layer before it is applied: it
// strips the layer's PathPrefix (skipping entries outside it), refuses
// names and hardlink targets that leave the layer root (they are "../" after
// cleaning; containerd's archive package would otherwise quietly bound
// them to the root), and keeps a running total of declared sizes so that
// sparse files cannot exceed the maximum layer size. An entry (or hardlink
// target) below a symlink the same layer made is refused too: a layer is
// unpacked into an empty directory, and tools never write through a
// symlink, so such an entry can only be an attempt to write elsewhere
// (containerd would confine it to the root; refusing says so).
type entryFilter struct {
	layer    string
	prefix   string
	max      int64
	total    int64
	symlinks map[string]bool // symlinks this layer made so far
}

// check returns false for an entry to skip and an error for a layer to
// refuse. It rewrites h.Name and h.Linkname to clean relative paths.
func (f *entryFilter) check(h *tar.Header) (bool, error) {
	name, ok, err := f.clean(h.Name)
	if err != nil || !ok {
		return ok, err
	}
	h.Name = name
	if err := f.belowSymlink(name); err != nil {
		return false, err
	}
	if h.Typeflag == tar.TypeLink {
		link, ok, err := f.clean(h.Linkname)
		if err != nil {
			return false, fmt.Errorf("hardlink %s: %w", h.Name, err)
		}
		if !ok {
			return false, fmt.Errorf("hardlink %s: target %q is outside %q", h.Name, h.Linkname, f.prefix)
		}
		if err := f.belowSymlink(link); err != nil {
			return false, fmt.Errorf("hardlink %s: %w", h.Name, err)
		}
		h.Linkname = link
	}
	if f.symlinks == nil {
		f.symlinks = map[string]bool{}
	}
	if h.Typeflag == tar.TypeSymlink {
		f.symlinks[name] = true
	} else {
		delete(f.symlinks, name)
	}
	if h.Size < 0 {
		return false, fmt.Errorf("layer %s: entry %s has negative size", f.layer, h.Name)
	}
	f.total += h.Size
	if f.total > f.max {
		return false, fmt.Errorf("layer %s: %w (%d bytes)", f.layer, ErrLayerTooLarge, f.max)
	}
	return true, nil
}

// belowSymlink refuses a path whose parent is a symlink of this layer.
func (f *entryFilter) belowSymlink(name string) error {
	for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if f.symlinks[dir] {
			return fmt.Errorf("layer %s: entry %q lies below symlink %q (writing through a symlink)", f.layer, name, dir)
		}
	}
	return nil
}

// clean returns name relative to the layer root, false for an entry
// outside the prefix or naming the root itself.
func (f *entryFilter) clean(name string) (string, bool, error) {
	if strings.ContainsRune(name, 0) {
		return "", false, fmt.Errorf("layer %s: entry name %q contains NUL", f.layer, name)
	}
	c := path.Clean(strings.TrimPrefix(name, "/"))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", false, fmt.Errorf("layer %s: entry %q leaves the layer root", f.layer, name)
	}
	if f.prefix != "" {
		p := path.Clean(f.prefix)
		rest, ok := strings.CutPrefix(c, p+"/")
		if !ok {
			return "", false, nil
		}
		c = rest
	}
	if c == "." || c == "" {
		return "", false, nil
	}
	return c, true, nil
}

// WalkFunc receives one entry of a layer in the store's form: h.Name (and
// a hardlink's h.Linkname) relative to the layer root, a whiteout turned
// into its overlay form (a character device 0/0 at the deleted path, owned
// as the whiteout was). r reads a regular file's content.
type WalkFunc func(h *tar.Header, r io.Reader) error

// WalkLayer reads layer l (at most maxSize uncompressed bytes) and calls fn
// for every entry as the store would unpack it, without writing anything:
// the same checks refuse entries that leave the root or pass through a
// symlink, opaque-directory markers are not passed on but listed in the
// returned record's Opaque, and other AUFS metadata (.wh..wh.*) is
// skipped. The blob's digest and DiffID are checked at the end, so a caller
// must discard what it made from the entries when WalkLayer fails. It is
// how "photon-init build" writes preloaded layers into an initramfs
// without root.
func WalkLayer(ctx context.Context, l Layer, maxSize int64, fn WalkFunc) (*LayerRecord, error) {
	st, err := openLayer(ctx, l, maxSize)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	filter := &entryFilter{layer: l.Digest, prefix: l.PathPrefix, max: maxSize}
	rec := &LayerRecord{Digest: l.Digest, DiffID: l.DiffID}
	tr := tar.NewReader(st)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("layer %s: read: %w", l.Digest, err)
		}
		ok, err := filter.check(h)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		dir, base := path.Split(h.Name)
		dir = strings.TrimSuffix(dir, "/")
		if dir == "" {
			dir = "."
		}
		switch {
		case base == whiteoutOpaque:
			rec.Opaque = append(rec.Opaque, dir)
			continue
		case strings.HasPrefix(base, whiteoutPrefix+whiteoutPrefix):
			continue // AUFS metadata (.wh..wh.plnk and the like)
		case strings.HasPrefix(base, whiteoutPrefix):
			target := strings.TrimPrefix(base, whiteoutPrefix)
			if target == "" || target == "." || target == ".." {
				return nil, fmt.Errorf("layer %s: bad whiteout %q", l.Digest, h.Name)
			}
			h = &tar.Header{Name: path.Join(dir, target), Typeflag: tar.TypeChar, Mode: 0, Uid: h.Uid, Gid: h.Gid, ModTime: h.ModTime}
		}
		if err := fn(h, tr); err != nil {
			return nil, fmt.Errorf("layer %s: %s: %w", l.Digest, h.Name, err)
		}
	}
	if err := st.finish(); err != nil {
		return nil, err
	}
	rec.Size = st.tarSize
	return rec, nil
}
