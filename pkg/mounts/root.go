package mounts

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// rootStaging is where the initramfs is bind-mounted before it is moved
// over /.
const rootStaging = "/.photon-root"

// IsInitramfsRoot reports whether / is the kernel's initramfs: a ramfs or
// tmpfs root, which is what the kernel gives an init started from an
// initramfs. It works before /proc is mounted.
func IsInitramfsRoot() (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return false, fmt.Errorf("statfs /: %w", err)
	}
	return st.Type == unix.RAMFS_MAGIC || st.Type == unix.TMPFS_MAGIC, nil
}

// MakeRootPivotable turns the initramfs root into an ordinary mount, as
// switch_root does: the kernel's rootfs mount has no parent, so pivot_root(2)
// away from it fails with EINVAL, and container runtimes (libcontainer)
// pivot_root into each container's root. It bind-mounts / (recursively) on
// a staging directory, moves that mount over /, and chroots into it; the
// whole process (all threads share one fs_struct) then runs on a mount whose
// parent is rootfs. It must run before anything else mounts or chdirs.
func MakeRootPivotable() error {
	if err := os.Mkdir(rootStaging, 0o700); err != nil && !os.IsExist(err) {
		return fmt.Errorf("mkdir %s: %w", rootStaging, err)
	}
	if err := unix.Mount("/", rootStaging, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind / on %s: %w", rootStaging, err)
	}
	if err := unix.Chdir(rootStaging); err != nil {
		return fmt.Errorf("chdir %s: %w", rootStaging, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		_ = unix.Chdir("/")
		_ = unix.Unmount(rootStaging, unix.MNT_DETACH)
		return fmt.Errorf("move %s to /: %w", rootStaging, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot to the new root mount: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}
