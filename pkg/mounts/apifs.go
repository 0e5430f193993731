package mounts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Item is one thing the early root filesystem needs.
type Item interface {
	// Create makes the item under root ("/" on a real boot).
	Create(root string) error
	// Fatal reports whether the boot cannot go on without the item.
	Fatal() bool
	fmt.Stringer
}

// Dir is a directory, created with its parents if missing.
type Dir struct {
	Path string
	Mode os.FileMode
}

// Create makes the directory.
func (d Dir) Create(root string) error {
	p := filepath.Join(root, d.Path)
	if err := os.MkdirAll(p, d.Mode); err != nil {
		return fmt.Errorf("mkdir %s: %w", p, err)
	}
	return nil
}

// Fatal is false: a missing directory shows up as a failed mount.
func (Dir) Fatal() bool { return false }

func (d Dir) String() string { return "dir " + d.Path }

// Mount is a filesystem mounted on a directory (created if missing). A
// filesystem of the same type already mounted there is left as it is.
type Mount struct {
	Source   string
	Target   string
	FSType   string
	Flags    uintptr
	Data     string
	Required bool
}

// Create mounts the filesystem unless it is already mounted.
func (m Mount) Create(root string) error {
	target := filepath.Join(root, m.Target)
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.FSType, target, err)
	}
	if mounted, _ := IsMountedAs(target, m.FSType); mounted {
		return nil
	}
	if err := unix.Mount(m.Source, target, m.FSType, m.Flags, m.Data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.FSType, target, err)
	}
	return nil
}

// Fatal reports whether the mount is required.
func (m Mount) Fatal() bool { return m.Required }

func (m Mount) String() string { return fmt.Sprintf("mount %s on %s", m.FSType, m.Target) }

// Symlink is a symbolic link at Path pointing to Target, made only if
// nothing exists at Path.
type Symlink struct {
	Target string
	Path   string
}

// Create makes the link unless Path exists.
func (s Symlink) Create(root string) error {
	p := filepath.Join(root, s.Path)
	if _, err := os.Lstat(p); err == nil {
		return nil
	}
	if err := os.Symlink(s.Target, p); err != nil {
		return fmt.Errorf("symlink %s -> %s: %w", p, s.Target, err)
	}
	return nil
}

// Fatal is false: programs cope without these links.
func (Symlink) Fatal() bool { return false }

func (s Symlink) String() string { return "symlink " + s.Path + " -> " + s.Target }

const (
	nosuid  = unix.MS_NOSUID
	nodev   = unix.MS_NODEV
	noexec  = unix.MS_NOEXEC
	relatim = unix.MS_RELATIME
)

// APIFilesystems is the early root filesystem of a photon-init machine, in
// the order it is created.
func APIFilesystems() []Item {
	return []Item{
		Mount{Source: "proc", Target: "/proc", FSType: "proc", Flags: nosuid | nodev | noexec | relatim, Required: true},
		Mount{Source: "sysfs", Target: "/sys", FSType: "sysfs", Flags: nosuid | nodev | noexec | relatim, Required: true},
		Mount{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: nosuid, Data: "mode=0755", Required: true},
		Mount{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Flags: nosuid | noexec | relatim, Data: "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		Symlink{Target: "pts/ptmx", Path: "/dev/ptmx"},
		Mount{Source: "shm", Target: "/dev/shm", FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=1777"},
		Mount{Source: "mqueue", Target: "/dev/mqueue", FSType: "mqueue", Flags: nosuid | nodev | noexec | relatim},
		Symlink{Target: "/proc/self/fd", Path: "/dev/fd"},
		Symlink{Target: "/proc/self/fd/0", Path: "/dev/stdin"},
		Symlink{Target: "/proc/self/fd/1", Path: "/dev/stdout"},
		Symlink{Target: "/proc/self/fd/2", Path: "/dev/stderr"},
		// libcontainer copies its own binary into memory on every container
		// start unless /run is a tmpfs of its own.
		Mount{Source: "run", Target: "/run", FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=0755", Required: true},
		Dir{Path: "/run/photon", Mode: 0o755},
		Mount{Source: "tmp", Target: "/tmp", FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=1777"},
		Mount{Source: "cgroup2", Target: "/sys/fs/cgroup", FSType: "cgroup2", Flags: nosuid | nodev | noexec | relatim, Data: "nsdelegate"},
	}
}

// Create makes every item under root in order. Failures of non-fatal items
// are collected and returned; the first fatal failure stops the list and is
// returned as fatal.
func Create(root string, items []Item) (warnings []error, fatal error) {
	for _, it := range items {
		if err := it.Create(root); err != nil {
			if it.Fatal() {
				return warnings, err
			}
			warnings = append(warnings, err)
		}
	}
	return warnings, nil
}

// mqueueMagic is MQUEUE_MAGIC of linux/magic.h (not in x/sys/unix).
const mqueueMagic = 0x19800202

// filesystem magic numbers of statfs(2), for IsMountedAs.
var fsMagic = map[string]int64{
	"proc":     unix.PROC_SUPER_MAGIC,
	"sysfs":    unix.SYSFS_MAGIC,
	"devtmpfs": unix.TMPFS_MAGIC,
	"tmpfs":    unix.TMPFS_MAGIC,
	"devpts":   unix.DEVPTS_SUPER_MAGIC,
	"mqueue":   mqueueMagic,
	"cgroup2":  unix.CGROUP2_SUPER_MAGIC,
}

// IsMountedAs reports whether path is a mount point whose filesystem is of
// type fstype (as far as statfs can tell: devtmpfs and tmpfs look alike).
// It works before /proc is mounted.
func IsMountedAs(path, fstype string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, err
	}
	if err := unix.Stat(filepath.Join(path, ".."), &parent); err != nil {
		return false, err
	}
	if st.Dev == parent.Dev && st.Ino != parent.Ino {
		return false, nil
	}
	magic, ok := fsMagic[fstype]
	if !ok {
		return false, errors.New("unknown filesystem type " + fstype)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return false, err
	}
	return int64(fs.Type) == magic, nil
}
