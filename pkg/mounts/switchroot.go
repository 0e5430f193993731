package mounts

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// SwitchResult is what SwitchRoot did.
type SwitchResult struct {
	// Moved are the mount points moved below the new root (/proc, /sys,
	// /dev, /run, ...), as paths of the old root.
	Moved []string
	// Detached are mounts that could not be moved and were detached.
	Detached []string
	// Freed is the size of the initramfs files deleted, in bytes, and
	// Removed how many entries went.
	Freed   int64
	Removed int
}

// SwitchRoot makes the filesystem mounted at newRoot the root of the
// process (of every thread: Go's threads share one fs_struct), as
// util-linux's and busybox's switch_root do from an initramfs, where
// pivot_root(2) fails with EINVAL:
//
//  1. every other mount at the top of the current root (/proc, /sys, /dev,
//     /run, /tmp, ...) is moved below newRoot with MS_MOVE, its directory
//     made if missing (their own submounts travel with them); one that
//     cannot be moved is detached;
//  2. newRoot is moved onto / and the process chroots into it; if that
//     fails, the mounts of step 1 are moved back and nothing else changed;
//  3. if the old root was the initramfs (ramfs or tmpfs), its files are
//     deleted through a descriptor kept open across the switch, to give
//     their memory back, never crossing into another filesystem.
//
// The process goes on running (its binary may have been deleted: the
// kernel keeps it while it runs, and /proc/self/exe still opens it).
func SwitchRoot(newRoot string) (SwitchResult, error) {
	var res SwitchResult
	newRoot = filepath.Clean(newRoot)
	var rootSt, newSt unix.Stat_t
	if err := unix.Stat("/", &rootSt); err != nil {
		return res, fmt.Errorf("switch root: stat /: %w", err)
	}
	if err := unix.Stat(newRoot, &newSt); err != nil {
		return res, fmt.Errorf("switch root: %w", err)
	}
	if newSt.Dev == rootSt.Dev {
		return res, fmt.Errorf("switch root: %s is not a mounted filesystem of its own", newRoot)
	}
	initramfs, _ := IsInitramfsRoot()
	ms, err := mountinfo.GetMounts(nil)
	if err != nil {
		return res, fmt.Errorf("switch root: %w", err)
	}
	rootID := -1
	for _, m := range ms {
		if m.Mountpoint == "/" && m.ID > rootID {
			rootID = m.ID
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
	for _, m := range ms {
		if m.Parent != rootID || m.Mountpoint == "/" || m.Mountpoint == newRoot {
			continue
		}
		dest := filepath.Join(newRoot, m.Mountpoint)
		err := os.MkdirAll(dest, 0o755)
		if err == nil {
			err = unix.Mount(m.Mountpoint, dest, "", unix.MS_MOVE, "")
		}
		if err == nil {
			res.Moved = append(res.Moved, m.Mountpoint)
			continue
		}
		if derr := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); derr != nil {
			moveBack(newRoot, res.Moved)
			return res, fmt.Errorf("switch root: move %s to %s: %v; detach: %w", m.Mountpoint, dest, err, derr)
		}
		res.Detached = append(res.Detached, m.Mountpoint+" ("+err.Error()+")")
	}
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		moveBack(newRoot, res.Moved)
		return res, fmt.Errorf("switch root: open /: %w", err)
	}
	defer unix.Close(oldRoot)
	if err := unix.Chdir(newRoot); err != nil {
		moveBack(newRoot, res.Moved)
		return res, fmt.Errorf("switch root: chdir %s: %w", newRoot, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		_ = unix.Chdir("/")
		moveBack(newRoot, res.Moved)
		return res, fmt.Errorf("switch root: move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return res, fmt.Errorf("switch root: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return res, fmt.Errorf("switch root: chdir /: %w", err)
	}
	if initramfs {
		freeAt(oldRoot, uint64(rootSt.Dev), &res)
	}
	return res, nil
}

// moveBack returns the mounts moved below newRoot to where they were.
func moveBack(newRoot string, moved []string) {
	for _, mp := range moved {
		_ = unix.Mount(filepath.Join(newRoot, mp), mp, "", unix.MS_MOVE, "")
	}
}

// freeAt deletes everything in the directory dirfd that is on device dev,
// leaving anything on another filesystem (a mount point) alone, as
// util-linux's switch_root does. Errors are not fatal: what cannot be
// deleted only keeps its memory.
func freeAt(dirfd int, dev uint64, res *SwitchResult) {
	// A duplicate descriptor: os.File closes what it is given.
	fd, err := unix.Dup(dirfd)
	if err != nil {
		return
	}
	dir := os.NewFile(uintptr(fd), "initramfs")
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return
	}
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || uint64(st.Dev) != dev {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			sub, err := unix.Openat(dirfd, name, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			freeAt(sub, dev, res)
			unix.Close(sub)
			if unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR) == nil {
				res.Removed++
			}
			continue
		}
		if unix.Unlinkat(dirfd, name, 0) == nil {
			res.Removed++
			if st.Mode&unix.S_IFMT == unix.S_IFREG {
				res.Freed += st.Size
			}
		}
	}
}
