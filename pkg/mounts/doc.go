// Package mounts sets up and tears down the machine's filesystems: the API
// filesystems every Linux userland expects (/proc, /sys, /dev, ...), and at
// shutdown the unmounting of everything in reverse order.
//
// The early root filesystem is data: a list of items (Dir, Mount, Symlink)
// that each know how to create themselves under a root directory and whether
// their failure is fatal to the boot, as u-root's libinit does it.
package mounts
