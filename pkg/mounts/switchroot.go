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
//  2. if the current root is the initramfs (ramfs or tmpfs), its files
//     are deleted to give their memory back, never crossing into another
//     filesystem or mount point;
//  3. newRoot is moved onto / and the process chroots into it.
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
			return res, fmt.Errorf("switch root: move %s to %s: %v; detach: %w", m.Mountpoint, dest, err, derr)
		}
		res.Detached = append(res.Detached, m.Mountpoint+" ("+err.Error()+")")
	}
	if initramfs, _ := IsInitramfsRoot(); initramfs {
		keep := map[string]bool{newRoot: true}
		if left, err := mountinfo.GetMounts(nil); err == nil {
			for _, m := range left {
				keep[m.Mountpoint] = true
			}
		}
		freeTree("/", uint64(rootSt.Dev), keep, &res)
	}
	if err := unix.Chdir(newRoot); err != nil {
		return res, fmt.Errorf("switch root: chdir %s: %w", newRoot, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return res, fmt.Errorf("switch root: move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return res, fmt.Errorf("switch root: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return res, fmt.Errorf("switch root: chdir /: %w", err)
	}
	return res, nil
}

// freeTree deletes everything below dir that is on device dev, leaving
// mount points (keep) and anything on another filesystem alone. Errors are
// not fatal: what cannot be deleted only keeps its memory.
func freeTree(dir string, dev uint64, keep map[string]bool, res *SwitchResult) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if keep[p] {
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil || uint64(st.Dev) != dev {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			freeTree(p, dev, keep, res)
			if err := unix.Rmdir(p); err == nil {
				res.Removed++
			}
			continue
		}
		if err := unix.Unlink(p); err == nil {
			res.Removed++
			if st.Mode&unix.S_IFMT == unix.S_IFREG {
				res.Freed += st.Size
			}
		}
	}
}
