// Package preload writes container images into an initramfs already
// unpacked in the image store's layout (package image), so that the first
// boot starts its containers without unpacking anything: "photon-init build
// --image REF" uses it.
//
// # Without root, exactly
//
// An unprivileged build cannot unpack a layer on disk faithfully: it can
// neither chown files to the layer's owners nor create the device nodes
// (and overlay whiteouts, 0/0 character devices) a layer holds, and a
// user namespace would need subordinate ID ranges wide enough for every
// owner in every image. So the layers are never unpacked here: each
// layer's tar entries are streamed (image.WalkLayer, with the store's own
// checks against escaping paths and its digest verification) straight
// into cpio entries under STORE/layers/ALG/HEX/fs, taking owner, mode,
// times, device numbers and hard links from the tar headers. Whiteouts
// become 0/0 character devices, as overlayfs wants them. Regular files'
// contents are spooled to a temporary directory, read again when the
// archive is written.
//
// What a newc cpio cannot hold are extended attributes: the opaque-directory
// marker (trusted.overlay.opaque) and the layers' own xattrs (file
// capabilities and the like). They are written into the layer's
// layer.json as pending fixups, which the store applies the first time it
// uses the layer (image.LayerRecord.Fixups); the initramfs root is a tmpfs,
// which takes them.
//
// Each image gets its record at STORE/images/HEX.json under the name
// manifests use for it: "--image NAME=REF" records REF's content as NAME
// (for instance "app:1.0=oci:./out/app:1.0"), plain "--image REF" as REF.
package preload

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/initramfs"
)

// DefaultStoreDir is the image store's path inside the initramfs.
const DefaultStoreDir = "/var/lib/photon"

// Spec is one image to preload.
type Spec struct {
	// Name is the reference manifests use for the image; the record is
	// written under it.
	Name string
	// Ref is where the image comes from.
	Ref string
}

// ParseSpec parses "[NAME=]REF".
func ParseSpec(arg string) (Spec, error) {
	name, ref, ok := strings.Cut(arg, "=")
	if !ok {
		name, ref = arg, arg
	}
	for _, r := range []string{name, ref} {
		if _, err := image.ParseReference(r); err != nil {
			return Spec{}, err
		}
	}
	return Spec{Name: name, Ref: ref}, nil
}

// Resolver resolves an image reference without unpacking it; *image.Store
// is one (with the Sources registered on it).
type Resolver interface {
	Resolve(ctx context.Context, ref string) (*image.Resolved, error)
}

// Options say where the images go.
type Options struct {
	// StoreDir is the store's path inside the initramfs
	// (DefaultStoreDir when "").
	StoreDir string
	// Spool is a directory for file contents until the archive is
	// written; the caller removes it afterwards.
	Spool string
	// MaxLayerSize bounds a layer's uncompressed size
	// (image.DefaultMaxLayerSize when 0).
	MaxLayerSize int64
}

// Result describes one preloaded image.
type Result struct {
	Spec   Spec
	Digest string
	Layers int
	// Entries and Bytes count the files and content added (layers shared
	// with an image added earlier are counted there only).
	Entries int
	Bytes   int64
}

// Add resolves every spec through r and adds its layers, records and the
// store's directories to b.
func Add(ctx context.Context, b *initramfs.Builder, r Resolver, specs []Spec, opts Options) ([]Result, error) {
	if opts.StoreDir == "" {
		opts.StoreDir = DefaultStoreDir
	}
	if opts.MaxLayerSize == 0 {
		opts.MaxLayerSize = image.DefaultMaxLayerSize
	}
	store := path.Clean("/" + opts.StoreDir)
	for _, d := range []string{"", "layers", "images", "locks"} {
		if err := b.AddDir(path.Join(store, d), 0o700); err != nil {
			return nil, err
		}
	}
	w := &writer{b: b, store: store, opts: opts, done: map[string]bool{}}
	var results []Result
	for _, spec := range specs {
		res, err := r.Resolve(ctx, spec.Ref)
		if err != nil {
			return nil, fmt.Errorf("preload %s: %w", spec.Name, err)
		}
		out := Result{Spec: spec, Digest: res.Digest, Layers: len(res.Layers)}
		rec := image.ImageRecord{Ref: spec.Name, Digest: res.Digest, Config: res.Config}
		for _, l := range res.Layers {
			n, bytes, err := w.layer(ctx, l)
			if err != nil {
				return nil, fmt.Errorf("preload %s (%s): %w", spec.Name, spec.Ref, err)
			}
			out.Entries += n
			out.Bytes += bytes
			rec.Layers = append(rec.Layers, l.Digest)
		}
		data, err := json.MarshalIndent(rec, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := b.AddFile(path.Join(store, image.RecordPath(spec.Name)), 0o600, append(data, '\n')); err != nil {
			return nil, err
		}
		results = append(results, out)
	}
	return results, nil
}

// writer turns layers into archive entries.
type writer struct {
	b     *initramfs.Builder
	store string
	opts  Options
	done  map[string]bool // layer digests already added
	spool int             // files spooled so far
}

// regMeta is a regular file's metadata, for its hard links.
type regMeta struct {
	mode     fs.FileMode
	uid, gid int
}

// layer adds one layer (unless added already) and returns the entries
// and content bytes it added.
func (w *writer) layer(ctx context.Context, l image.Layer) (entries int, size int64, err error) {
	if w.done[l.Digest] {
		return 0, 0, nil
	}
	rel, err := image.LayerPath(l.Digest)
	if err != nil {
		return 0, 0, err
	}
	dir := path.Join(w.store, rel)
	root := path.Join(dir, "fs")
	if err := w.b.AddDir(path.Dir(dir), 0o700); err != nil {
		return 0, 0, err
	}
	if err := w.b.AddDir(root, 0o755); err != nil {
		return 0, 0, err
	}
	regs := map[string]regMeta{}
	var xattrs []image.Xattr
	rec, err := image.WalkLayer(ctx, l, w.opts.MaxLayerSize, func(h *tar.Header, r io.Reader) error {
		e := initramfs.Entry{
			Path:    path.Join(root, h.Name),
			Mode:    h.FileInfo().Mode(),
			UID:     uint32(h.Uid),
			GID:     uint32(h.Gid),
			ModTime: h.ModTime,
		}
		if h.Uid < 0 || h.Gid < 0 || h.Uid > math.MaxUint32 || h.Gid > math.MaxUint32 {
			return fmt.Errorf("owner %d:%d out of range", h.Uid, h.Gid)
		}
		switch h.Typeflag {
		case tar.TypeDir, tar.TypeFifo:
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives
			regs[h.Name] = regMeta{e.Mode, h.Uid, h.Gid}
			if h.Size > 0 {
				src, err := w.spoolFile(r)
				if err != nil {
					return err
				}
				e.Source = src
				size += h.Size
			}
		case tar.TypeLink:
			t, ok := regs[h.Linkname]
			if !ok {
				return fmt.Errorf("hard link to %s, which is not an earlier regular file of the layer", h.Linkname)
			}
			e.Mode, e.UID, e.GID = t.mode, uint32(t.uid), uint32(t.gid)
			e.Hardlink = path.Join(root, h.Linkname)
			regs[h.Name] = t
		case tar.TypeSymlink:
			e.Linkname = h.Linkname
		case tar.TypeChar, tar.TypeBlock:
			if h.Devmajor < 0 || h.Devminor < 0 || h.Devmajor > math.MaxUint32 || h.Devminor > math.MaxUint32 {
				return fmt.Errorf("device number %d:%d out of range", h.Devmajor, h.Devminor)
			}
			e.Major, e.Minor = uint32(h.Devmajor), uint32(h.Devminor)
		case tar.TypeXGlobalHeader:
			return nil
		default:
			return fmt.Errorf("unsupported tar entry type %q", h.Typeflag)
		}
		for k, v := range h.PAXRecords {
			name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
			if !ok || strings.HasPrefix(name, "trusted.") {
				continue // the store does not take trusted.* from layers either
			}
			xattrs = append(xattrs, image.Xattr{Path: h.Name, Name: name, Value: []byte(v)})
		}
		entries++
		return w.b.Add(e)
	})
	if err != nil {
		return 0, 0, err
	}
	if len(rec.Opaque) > 0 || len(xattrs) > 0 {
		rec.Fixups = &image.LayerFixups{Opaque: len(rec.Opaque) > 0, Xattrs: xattrs}
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return 0, 0, err
	}
	if err := w.b.AddFile(path.Join(dir, "layer.json"), 0o644, append(data, '\n')); err != nil {
		return 0, 0, err
	}
	w.done[l.Digest] = true
	return entries, size, nil
}

// spoolFile copies a file's content into the spool directory.
func (w *writer) spoolFile(r io.Reader) (string, error) {
	if w.opts.Spool == "" {
		return "", fmt.Errorf("no spool directory for file contents")
	}
	w.spool++
	p := filepath.Join(w.opts.Spool, strconv.Itoa(w.spool))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return "", fmt.Errorf("spool %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("spool %s: %w", p, err)
	}
	return p, nil
}
