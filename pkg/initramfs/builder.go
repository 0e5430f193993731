package initramfs

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is one file of the archive.
type Entry struct {
	// Path is the path inside the initramfs, such as "/init" or
	// "lib/modules/6.1.0-28-amd64/modules.dep"; a leading "/" is optional.
	Path string
	// Mode holds the type (regular file when no type bit is set, or
	// fs.ModeDir, fs.ModeSymlink, fs.ModeDevice with or without
	// fs.ModeCharDevice, fs.ModeNamedPipe), the permission bits and
	// fs.ModeSetuid, fs.ModeSetgid, fs.ModeSticky.
	Mode fs.FileMode
	// Data is a regular file's content, when Source is empty.
	Data []byte
	// Source is a file on disk whose content is copied when the archive
	// is written (so large files are not held in memory). Its size is
	// taken when the entry is added and must not change.
	Source string
	// Linkname is a symlink's target.
	Linkname string
	// Major and Minor are a device node's device number.
	Major, Minor uint32
	// UID and GID own the entry (default 0:0).
	UID, GID uint32
	// ModTime is the entry's modification time; zero means the
	// Builder's ModTime.
	ModTime time.Time
	// Hardlink makes a regular file entry a hard link to the regular
	// file entry at that archive path: both share one inode, written
	// with nlink set and the data once, as the kernel's unpacker links
	// them. Data and Source are ignored.
	Hardlink string

	size int64
	seq  int // order of addition: later entries win
}

// Builder collects entries and writes them as a newc cpio archive. All
// entries are owned by 0:0 and get the same modification time; they are
// written sorted by path, so a directory precedes its contents and equal
// inputs give byte-identical archives. Missing parent directories are
// written as mode 0755. Adding a path that exists replaces the entry (the
// later one wins); a non-directory added after entries below its path
// hides them, and an entry added below a non-directory turns that into a
// directory.
//
// A Builder is not safe for concurrent use.
type Builder struct {
	// ModTime is every entry's modification time; the zero value writes
	// 0 (1970-01-01), which keeps archives reproducible.
	ModTime time.Time

	entries map[string]*Entry
	seq     int
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder {
	return &Builder{entries: map[string]*Entry{}}
}

// cleanPath turns an entry path into the archive's relative form.
func cleanPath(p string) (string, error) {
	c := path.Clean("/" + filepath.ToSlash(p))
	if c == "/" {
		return "", fmt.Errorf("initramfs: entry path %q names the root", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("initramfs: entry path %q contains ..", p)
		}
	}
	return c[1:], nil
}

// Add adds e, replacing any entry at the same path. A regular file with a
// Source is stat'ed now.
func (b *Builder) Add(e Entry) error {
	p, err := cleanPath(e.Path)
	if err != nil {
		return err
	}
	e.Path = p
	if e.Hardlink != "" {
		if !e.Mode.IsRegular() {
			return fmt.Errorf("initramfs: %s: only regular files can be hard links", p)
		}
		if e.Hardlink, err = cleanPath(e.Hardlink); err != nil {
			return err
		}
		e.Data, e.Source = nil, ""
	}
	switch {
	case e.Hardlink != "":
	case e.Mode.IsRegular():
		if e.Source != "" {
			fi, err := os.Stat(e.Source)
			if err != nil {
				return fmt.Errorf("initramfs: stat %s: %w", e.Source, err)
			}
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("initramfs: %s: not a regular file", e.Source)
			}
			e.size = fi.Size()
		} else {
			e.size = int64(len(e.Data))
		}
		if e.size > math.MaxUint32 {
			return fmt.Errorf("initramfs: %s: %d bytes is too large for newc cpio", p, e.size)
		}
	case e.Mode&fs.ModeSymlink != 0:
		if e.Linkname == "" {
			return fmt.Errorf("initramfs: symlink %s has no target", p)
		}
	case e.Mode.IsDir(), e.Mode&fs.ModeDevice != 0, e.Mode&fs.ModeNamedPipe != 0:
	default:
		return fmt.Errorf("initramfs: %s: unsupported file type %v", p, e.Mode.Type())
	}
	b.seq++
	e.seq = b.seq
	b.entries[p] = &e
	return nil
}

// AddDir adds a directory.
func (b *Builder) AddDir(p string, perm fs.FileMode) error {
	return b.Add(Entry{Path: p, Mode: fs.ModeDir | perm})
}

// AddFile adds a regular file with the given content.
func (b *Builder) AddFile(p string, perm fs.FileMode, data []byte) error {
	return b.Add(Entry{Path: p, Mode: perm, Data: data})
}

// AddFileFrom adds a regular file whose content is read from src when the
// archive is written.
func (b *Builder) AddFileFrom(p string, perm fs.FileMode, src string) error {
	return b.Add(Entry{Path: p, Mode: perm, Source: src})
}

// AddSymlink adds a symbolic link to target.
func (b *Builder) AddSymlink(p, target string) error {
	return b.Add(Entry{Path: p, Mode: fs.ModeSymlink | 0o777, Linkname: target})
}

// AddCharDevice adds a character device node.
func (b *Builder) AddCharDevice(p string, perm fs.FileMode, major, minor uint32) error {
	return b.Add(Entry{Path: p, Mode: fs.ModeDevice | fs.ModeCharDevice | perm, Major: major, Minor: minor})
}

// Paths returns the paths of the entries that will be written, sorted,
// without implicit parent directories.
func (b *Builder) Paths() []string {
	var out []string
	for p, e := range b.resolve() {
		if e.seq != 0 {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// resolve returns the entries to write by path: the added ones that no
// later non-directory above them hides, and 0755 directories (seq 0) for
// every missing parent and for a non-directory that something added later
// is below.
func (b *Builder) resolve() map[string]*Entry {
	out := make(map[string]*Entry, len(b.entries))
	for p, e := range b.entries {
		hidden := false
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if a, ok := b.entries[dir]; ok && !a.Mode.IsDir() && a.seq > e.seq {
				hidden = true
				break
			}
		}
		if !hidden {
			out[p] = e
		}
	}
	for p := range out {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			a, ok := out[dir]
			if ok && a.Mode.IsDir() {
				break
			}
			out[dir] = &Entry{Path: dir, Mode: fs.ModeDir | 0o755}
		}
	}
	return out
}

// AddTree copies the tree at root into the archive under dest ("" or "/"
// for the archive's root): directories, regular files, symlinks (not
// followed), device nodes and FIFOs, keeping permission and setuid, setgid
// and sticky bits; ownership becomes 0:0. Its entries replace existing ones
// at the same paths. Sockets are an error.
func (b *Builder) AddTree(ctx context.Context, root, dest string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("initramfs: walk %s: %w", p, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("initramfs: %s: %w", p, err)
		}
		if rel == "." {
			if !d.IsDir() {
				return fmt.Errorf("initramfs: %s: not a directory", root)
			}
			return nil
		}
		target := path.Join("/", filepath.ToSlash(dest), filepath.ToSlash(rel))
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("initramfs: stat %s: %w", p, err)
		}
		mode := fi.Mode()
		extra := mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch {
		case mode.IsDir():
			return b.Add(Entry{Path: target, Mode: fs.ModeDir | extra})
		case mode.IsRegular():
			return b.Add(Entry{Path: target, Mode: extra, Source: p})
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("initramfs: readlink %s: %w", p, err)
			}
			return b.Add(Entry{Path: target, Mode: fs.ModeSymlink | 0o777, Linkname: link})
		case mode&fs.ModeDevice != 0:
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return fmt.Errorf("initramfs: %s: no device number", p)
			}
			return b.Add(Entry{Path: target, Mode: mode.Type() | extra, Major: unix.Major(st.Rdev), Minor: unix.Minor(st.Rdev)})
		case mode&fs.ModeNamedPipe != 0:
			return b.Add(Entry{Path: target, Mode: fs.ModeNamedPipe | extra})
		default:
			return fmt.Errorf("initramfs: %s: cannot archive file type %v", p, mode.Type())
		}
	})
}

// WriteStats describes a written archive.
type WriteStats struct {
	// Entries is the number of cpio entries, implicit parents included,
	// the trailer not.
	Entries int
	// CPIOBytes is the size of the uncompressed archive.
	CPIOBytes int64
	// Bytes is the size written (after compression); set by Write only.
	Bytes int64
}

// unixMode converts an fs.FileMode to the st_mode bits cpio stores.
func unixMode(m fs.FileMode) uint32 {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		v |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		v |= unix.S_ISVTX
	}
	switch {
	case m.IsDir():
		v |= unix.S_IFDIR
	case m&fs.ModeSymlink != 0:
		v |= unix.S_IFLNK
	case m&fs.ModeCharDevice != 0:
		v |= unix.S_IFCHR
	case m&fs.ModeDevice != 0:
		v |= unix.S_IFBLK
	case m&fs.ModeNamedPipe != 0:
		v |= unix.S_IFIFO
	default:
		v |= unix.S_IFREG
	}
	return v
}

// WriteCPIO writes the uncompressed newc archive to w.
func (b *Builder) WriteCPIO(ctx context.Context, w io.Writer) (WriteStats, error) {
	all := b.resolve()
	paths := make([]string, 0, len(all))
	for p := range all {
		paths = append(paths, p)
	}
	// Plain byte order puts "a" before "a/b": parents come first.
	slices.Sort(paths)

	var mtime uint32
	if !b.ModTime.IsZero() && b.ModTime.Unix() > 0 {
		mtime = uint32(min(b.ModTime.Unix(), math.MaxUint32))
	}
	links, err := hardlinkGroups(all)
	if err != nil {
		return WriteStats{}, err
	}
	cw := &newcWriter{w: w}
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return WriteStats{}, err
		}
		if err := b.writeEntry(cw, all[p], mtime, links); err != nil {
			return WriteStats{}, err
		}
	}
	if err := cw.trailer(); err != nil {
		return WriteStats{}, fmt.Errorf("initramfs: write trailer: %w", err)
	}
	return WriteStats{Entries: len(paths), CPIOBytes: cw.n}, nil
}

// linkGroup is a regular file and its hard links: one inode.
type linkGroup struct {
	target  *Entry // the entry with the data
	nlink   uint32
	ino     uint32 // assigned when the first member is written
	written bool
}

// hardlinkGroups maps the path of every hard link and of every file that
// has hard links to its group.
func hardlinkGroups(all map[string]*Entry) (map[string]*linkGroup, error) {
	groups := map[string]*linkGroup{}
	byTarget := map[string]*linkGroup{}
	for p, e := range all {
		if e.Hardlink == "" {
			continue
		}
		t, ok := all[e.Hardlink]
		if !ok || !t.Mode.IsRegular() || t.Hardlink != "" {
			return nil, fmt.Errorf("initramfs: hard link %s: %s is not a regular file in the archive", p, e.Hardlink)
		}
		g := byTarget[e.Hardlink]
		if g == nil {
			g = &linkGroup{target: t, nlink: 1}
			byTarget[e.Hardlink] = g
			groups[e.Hardlink] = g
		}
		g.nlink++
		groups[p] = g
	}
	return groups, nil
}

func (b *Builder) writeEntry(cw *newcWriter, e *Entry, mtime uint32, links map[string]*linkGroup) error {
	if !e.ModTime.IsZero() && e.ModTime.Unix() > 0 {
		mtime = uint32(min(e.ModTime.Unix(), math.MaxUint32))
	}
	h := newcHeader{name: e.Path, mode: unixMode(e.Mode), nlink: 1, mtime: mtime, uid: e.UID, gid: e.GID}
	if g := links[e.Path]; g != nil {
		// Every member shares the inode; the first written carries the
		// data, the others are empty (the kernel links them to it).
		h.nlink = g.nlink
		if g.written {
			h.ino = g.ino
			if err := cw.header(h); err != nil {
				return fmt.Errorf("initramfs: write %s: %w", e.Path, err)
			}
			return cw.pad()
		}
		g.written = true
		data := *g.target
		data.Path, data.Mode, data.UID, data.GID = e.Path, e.Mode, e.UID, e.GID
		e = &data
		h.assignIno = &g.ino
	}
	var data []byte
	switch {
	case e.Mode.IsDir():
		h.nlink = 2
	case e.Mode&fs.ModeSymlink != 0:
		data = []byte(e.Linkname)
		h.size = uint32(len(data))
	case e.Mode&fs.ModeDevice != 0:
		h.rdevmajor, h.rdevminor = e.Major, e.Minor
	case e.Mode.IsRegular():
		h.size = uint32(e.size)
		data = e.Data
	}
	if err := cw.header(h); err != nil {
		return fmt.Errorf("initramfs: write %s: %w", e.Path, err)
	}
	if e.Mode.IsRegular() && e.Source != "" {
		if err := copySource(cw, e); err != nil {
			return err
		}
	} else if len(data) > 0 {
		if err := cw.write(data); err != nil {
			return fmt.Errorf("initramfs: write %s: %w", e.Path, err)
		}
	}
	if err := cw.pad(); err != nil {
		return fmt.Errorf("initramfs: write %s: %w", e.Path, err)
	}
	return nil
}

// copySource streams e.Source into the archive, checking that it still has
// the size written in the header.
func copySource(cw *newcWriter, e *Entry) error {
	f, err := os.Open(e.Source)
	if err != nil {
		return fmt.Errorf("initramfs: open %s: %w", e.Source, err)
	}
	defer f.Close()
	n, err := io.Copy(writerFunc(cw.write), io.LimitReader(f, e.size))
	if err != nil {
		return fmt.Errorf("initramfs: copy %s: %w", e.Source, err)
	}
	if n != e.size {
		return fmt.Errorf("initramfs: %s shrank from %d to %d bytes while building", e.Source, e.size, n)
	}
	var one [1]byte
	if m, _ := f.Read(one[:]); m > 0 {
		return fmt.Errorf("initramfs: %s grew beyond %d bytes while building", e.Source, e.size)
	}
	return nil
}

// writerFunc adapts the newc writer's write method to io.Writer.
type writerFunc func([]byte) error

func (f writerFunc) Write(p []byte) (int, error) {
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
