// Package mounts sets up and tears down the machine's filesystems: the API
// filesystems every Linux userland expects (/proc, /sys, /dev, ...), the
// machine's own mounts (disks found by label or UUID, 9p and virtiofs
// shares, tmpfs, overlays), the switch from the initramfs to a real root,
// and at shutdown the unmounting of everything in reverse order.
//
// The early root filesystem is data: a list of items (Dir, Mount, Symlink)
// that each know how to create themselves under a root directory and whether
// their failure is fatal to the boot, as u-root's libinit does it.
//
// The machine's mounts are Entries (init.yaml "mounts:"), mounted in order
// by a Mounter: it waits for each disk (package blockdev), formats a blank
// one when the entry says mkfs_if_empty (with the filesystem's own mkfs
// tool, run through the caller's Run so that PID 1's reaper owns it),
// detects the type from the superblock, loads the filesystem's module when
// the kernel lacks it, and mounts with fstab-style options (ParseOptions).
// A failed entry leaves its target empty and read-only (a guard tmpfs), so
// nothing meant for a missing disk lands in memory unnoticed.
//
// SwitchRoot moves the API mounts onto a real root, frees the initramfs and
// chroots into it, as switch_root(8) does.
package mounts
