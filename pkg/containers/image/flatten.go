package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Flatten is the package function Flatten, for callers holding a Store.
func (s *Store) Flatten(ctx context.Context, img *Image, dst string) error {
	return Flatten(ctx, img, dst)
}

// Flatten copies the layers of img, lowest first, into dst (created if
// missing, which must otherwise be empty), for machines without overlayfs.
// It honours the layers' overlay whiteouts as overlayfs would: a 0/0
// character device deletes the path below it, an opaque directory
// (trusted.overlay.opaque=y, or listed opaque in the layer's record)
// hides what lower layers had in it, and a directory replaces a lower
// non-directory. Ownership, modes, times, xattrs (but trusted.overlay.*),
// device nodes and hardlinks within a layer are kept where the file system
// and privileges allow; an error says which path failed.
func Flatten(ctx context.Context, img *Image, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("flatten %s: %w", img.Ref, err)
	}
	ents, err := os.ReadDir(dst)
	if err != nil {
		return fmt.Errorf("flatten %s: %w", img.Ref, err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("flatten %s: %s is not empty", img.Ref, dst)
	}
	for _, layer := range img.Layers {
		var opaque []string
		if rec, err := readLayerRecord(filepath.Dir(layer)); err == nil {
			opaque = rec.Opaque
		}
		f := &flattener{src: layer, dst: dst, opaque: opaque, links: map[inode]string{}}
		if err := f.copy(ctx); err != nil {
			return fmt.Errorf("flatten %s: layer %s: %w", img.Ref, layer, err)
		}
	}
	return nil
}

// inode identifies a file for hardlink detection.
type inode struct{ dev, ino uint64 }

// flattener copies one layer onto the flattened tree.
type flattener struct {
	src, dst string
	opaque   []string
	links    map[inode]string // first copy of each multiply-linked file
	dirs     []dirMeta        // directory times, set last
}

type dirMeta struct {
	path  string
	atime time.Time
	mtime time.Time
}

func (f *flattener) copy(ctx context.Context) error {
	err := filepath.WalkDir(f.src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(f.src, p)
		if err != nil {
			return err
		}
		return f.entry(p, rel)
	})
	if err != nil {
		return err
	}
	for _, d := range slices.Backward(f.dirs) {
		if err := os.Chtimes(d.path, d.atime, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

// entry copies one path of the layer.
func (f *flattener) entry(src, rel string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no stat", src)
	}
	target := filepath.Join(f.dst, rel)
	existing, lerr := os.Lstat(target)
	exists := lerr == nil
	mode := fi.Mode()

	switch {
	case mode&fs.ModeCharDevice != 0 && st.Rdev == 0:
		// A whiteout: the path is gone in this and the layers above.
		if exists {
			if err := os.RemoveAll(target); err != nil {
				return err
			}
		}
		return nil
	case mode.IsDir():
		if exists && !existing.IsDir() {
			if err := os.Remove(target); err != nil {
				return err
			}
			exists = false
		}
		if exists && rel != "." && f.isOpaque(src, rel) {
			if err := clearDir(target); err != nil {
				return err
			}
		}
		if !exists {
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
		}
	default:
		if exists {
			if err := os.RemoveAll(target); err != nil {
				return err
			}
		}
		if err := f.create(src, target, fi, st); err != nil {
			return err
		}
		if mode.IsRegular() && st.Nlink > 1 {
			if _, linked := f.links[inode{st.Dev, st.Ino}]; linked {
				return nil // a hardlink shares the first copy's metadata
			}
			f.links[inode{st.Dev, st.Ino}] = target
		}
	}
	return copyMeta(src, target, fi, st, &f.dirs)
}

// isOpaque reports whether the layer directory at src is opaque.
func (f *flattener) isOpaque(src, rel string) bool {
	if slices.Contains(f.opaque, filepath.ToSlash(rel)) {
		return true
	}
	v := make([]byte, 4)
	n, err := unix.Lgetxattr(src, opaqueXattr, v)
	return err == nil && n == 1 && v[0] == 'y'
}

// create makes a non-directory at target like src.
func (f *flattener) create(src, target string, fi fs.FileInfo, st *syscall.Stat_t) error {
	mode := fi.Mode()
	switch {
	case mode.IsRegular():
		if st.Nlink > 1 {
			if first, ok := f.links[inode{st.Dev, st.Ino}]; ok {
				return os.Link(first, target)
			}
		}
		return copyFile(src, target)
	case mode&fs.ModeSymlink != 0:
		link, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(link, target)
	case mode&(fs.ModeDevice|fs.ModeNamedPipe) != 0:
		return unix.Mknod(target, st.Mode, int(st.Rdev))
	case mode&fs.ModeSocket != 0:
		return nil // sockets are not content
	}
	return fmt.Errorf("%s: unsupported file type %v", src, mode.Type())
}

// copyFile copies a regular file's content.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// clearDir removes everything inside dir.
func clearDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// copyMeta gives target src's owner, mode, xattrs and times (directory
// times are queued: writing inside a directory changes them).
func copyMeta(src, target string, fi fs.FileInfo, st *syscall.Stat_t, dirs *[]dirMeta) error {
	if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, fs.ErrPermission) {
		return err
	}
	if err := copyXattrs(src, target); err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		// After chown, which clears setuid bits.
		if err := unix.Chmod(target, st.Mode&07777); err != nil {
			return fmt.Errorf("chmod %s: %w", target, err)
		}
	}
	atime := time.Unix(st.Atim.Unix())
	mtime := time.Unix(st.Mtim.Unix())
	if fi.IsDir() {
		*dirs = append(*dirs, dirMeta{target, atime, mtime})
		return nil
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", target, err)
	}
	return nil
}

// copyXattrs copies the extended attributes of src to dst, leaving out
// overlayfs's own.
func copyXattrs(src, dst string) error {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(src, buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = unix.Llistxattr(src, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Llistxattr(src, buf)
		}
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list xattrs of %s: %w", src, err)
	}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") {
			continue
		}
		sz, err := unix.Lgetxattr(src, name, nil)
		if err != nil {
			return fmt.Errorf("read xattr %s of %s: %w", name, src, err)
		}
		val := make([]byte, sz)
		if sz, err = unix.Lgetxattr(src, name, val); err != nil {
			return fmt.Errorf("read xattr %s of %s: %w", name, src, err)
		}
		if err := unix.Lsetxattr(dst, name, val[:sz], 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("set xattr %s on %s: %w", name, dst, err)
		}
	}
	return nil
}
