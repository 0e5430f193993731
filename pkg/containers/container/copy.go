package container

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// opaqueXattr marks an overlayfs directory that hides what lower layers
// have in it.
const opaqueXattr = "trusted.overlay.opaque"

// copyOptions choose how copyTree treats overlayfs markers.
type copyOptions struct {
	// layer applies src as an overlay layer on top of dst: a 0/0
	// character device (whiteout) removes the path from dst, an opaque
	// directory empties dst's directory first.
	layer bool
}

// copyTree copies the tree at src into the directory dst (created when
// missing), keeping modes, owners, times, symlinks, device nodes, fifos
// and extended attributes (except overlayfs' own). Hard links are copied
// as separate files and sockets are skipped. Every path in dst is resolved
// inside dst (os.Root), so a symlink in dst cannot send a write outside it.
func copyTree(src, dst string, opt copyOptions) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("copy: create %s: %w", dst, err)
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return fmt.Errorf("copy: open %s: %w", dst, err)
	}
	defer root.Close()
	type dirTimes struct {
		rel string
		fi  fs.FileInfo
	}
	var dirs []dirTimes
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if err := copyEntry(root, p, rel, fi, opt); err != nil {
			return fmt.Errorf("copy %s: %w", p, err)
		}
		if fi.IsDir() {
			dirs = append(dirs, dirTimes{rel, fi})
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Directory times last: writing inside a directory changes them.
	for i := len(dirs) - 1; i >= 0; i-- {
		if st, ok := dirs[i].fi.Sys().(*syscall.Stat_t); ok {
			_ = setTimes(root, dirs[i].rel, st)
		}
	}
	return nil
}

// copyEntry copies one entry of the walk to rel in root.
func copyEntry(root *os.Root, src, rel string, fi fs.FileInfo, opt copyOptions) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("no stat data")
	}
	mode := fi.Mode()
	if opt.layer && mode&fs.ModeCharDevice != 0 && st.Rdev == 0 {
		if rel == "." {
			return nil
		}
		return removeAll(root, rel)
	}
	if mode.IsDir() {
		if opt.layer && rel != "." && isOpaque(src) {
			if err := removeAll(root, rel); err != nil {
				return err
			}
		}
		if rel != "." {
			if cur, err := root.Lstat(rel); err == nil && !cur.IsDir() {
				if err := root.Remove(rel); err != nil {
					return err
				}
			}
			if err := root.Mkdir(rel, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
		}
		return finish(root, src, rel, st, mode, true)
	}
	if _, err := root.Lstat(rel); err == nil {
		if err := removeAll(root, rel); err != nil {
			return err
		}
	}
	switch {
	case mode.IsRegular():
		if err := copyFile(root, src, rel); err != nil {
			return err
		}
		return finish(root, src, rel, st, mode, true)
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := root.Symlink(target, rel); err != nil {
			return err
		}
		return root.Lchown(rel, int(st.Uid), int(st.Gid))
	case mode&(fs.ModeDevice|fs.ModeNamedPipe) != 0:
		if err := mknodIn(root, rel, st.Mode, st.Rdev); err != nil {
			return err
		}
		return finish(root, src, rel, st, mode, false)
	}
	return nil // sockets and the like are not copied
}

// finish sets owner, mode (after the owner: chown clears set-id bits),
// extended attributes and times.
func finish(root *os.Root, src, rel string, st *syscall.Stat_t, mode fs.FileMode, xattrs bool) error {
	if err := root.Lchown(rel, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := root.Chmod(rel, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	if xattrs {
		if err := copyXattrs(root, src, rel); err != nil {
			return err
		}
	}
	if !mode.IsDir() {
		return setTimes(root, rel, st)
	}
	return nil
}

// setTimes sets rel's access and modification times from st.
func setTimes(root *os.Root, rel string, st *syscall.Stat_t) error {
	return root.Chtimes(rel, time.Unix(st.Atim.Unix()), time.Unix(st.Mtim.Unix()))
}

// copyFile copies a regular file's content (copy_file_range where the
// filesystems allow).
func copyFile(root *os.Root, src, rel string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyXattrs copies src's extended attributes except overlayfs' own.
// Filesystems without xattr support are not an error.
func copyXattrs(root *os.Root, src, rel string) error {
	names, err := listXattrs(src)
	if err != nil || len(names) == 0 {
		return nil
	}
	f, err := root.Open(rel)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, n := range names {
		if strings.HasPrefix(n, "trusted.overlay.") {
			continue
		}
		v, err := getXattr(src, n)
		if err != nil {
			continue
		}
		if err := unix.Fsetxattr(int(f.Fd()), n, v, 0); err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("set xattr %s: %w", n, err)
		}
	}
	return nil
}

func listXattrs(p string) ([]string, error) {
	n, err := unix.Llistxattr(p, nil)
	if err != nil || n == 0 {
		return nil, err
	}
	buf := make([]byte, n)
	n, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

func getXattr(p, name string) ([]byte, error) {
	n, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	n, err = unix.Lgetxattr(p, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// isOpaque reports whether dir carries overlayfs' opaque marker.
func isOpaque(dir string) bool {
	v, err := getXattr(dir, opaqueXattr)
	return err == nil && string(v) == "y"
}

// removeAll removes rel and what is below it, inside root.
func removeAll(root *os.Root, rel string) error {
	if err := root.RemoveAll(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// mknodIn creates a device node or fifo at rel inside root.
func mknodIn(root *os.Root, rel string, mode uint32, dev uint64) error {
	dir, err := root.Open(filepath.Dir(rel))
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := unix.Mknodat(int(dir.Fd()), filepath.Base(rel), mode, int(dev)); err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	return nil
}
