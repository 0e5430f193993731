package container

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// maxMountData is the longest option string mount(2) takes: one page
// including the terminating NUL.
const maxMountData = 4095

// overlayAvailable reports whether the kernel lists overlayfs in
// /proc/filesystems (as it does once the module is loaded).
func overlayAvailable() bool {
	data, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && f[len(f)-1] == "overlay" {
			return true
		}
	}
	return false
}

// errNoOverlay is wrapped by mountOverlay's error when the kernel cannot
// mount the overlay at all (no overlayfs, or an upper filesystem it does
// not accept), so that the caller falls back to a flattened copy.
var errNoOverlay = errors.New("overlayfs unavailable")

// overlayData is the mount option string: lowerdir lists the layers
// highest first.
func overlayData(lowers []string, upper, work string, indexOff bool) (string, error) {
	for _, p := range append(slices.Clone(lowers), upper, work) {
		if strings.ContainsAny(p, ":,\\") {
			return "", fmt.Errorf("overlay: path %q contains ':', ',' or '\\', which overlayfs options cannot hold", p)
		}
	}
	rev := slices.Clone(lowers)
	slices.Reverse(rev)
	data := "lowerdir=" + strings.Join(rev, ":") + ",upperdir=" + upper + ",workdir=" + work
	if indexOff {
		// Docker does the same: with index=on, lower layers shared by
		// several overlays may refuse the second mount.
		data += ",index=off"
	}
	return data, nil
}

// overlayIndexOn reports whether the kernel's overlay index feature is on
// by default.
func overlayIndexOn() bool {
	b, err := os.ReadFile("/sys/module/overlay/parameters/index")
	return err == nil && strings.TrimSpace(string(b)) == "Y"
}

// mountOverlay mounts the layers (lowest first) with upper and work at
// target. Option strings longer than a page use the new mount API, which
// takes one lower layer at a time (Linux 6.8 and later).
func mountOverlay(lowers []string, upper, work, target string) error {
	if len(lowers) == 0 {
		return errors.New("overlay: the image has no layers")
	}
	indexOff := overlayIndexOn()
	data, err := overlayData(lowers, upper, work, indexOff)
	if err != nil {
		return err
	}
	if len(data) <= maxMountData {
		err = unix.Mount("overlay", target, "overlay", 0, data)
	} else {
		err = mountOverlayFsconfig(lowers, upper, work, target, indexOff)
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("mount overlay at %s: %w (%w)", target, err, errNoOverlay)
	}
	return fmt.Errorf("mount overlay at %s: %w", target, err)
}

// mountOverlayFsconfig mounts an overlay with fsopen/fsconfig, giving
// each lower layer in its own "lowerdir+" call.
func mountOverlayFsconfig(lowers []string, upper, work, target string, indexOff bool) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen: %w", err)
	}
	defer unix.Close(fd)
	for i := len(lowers) - 1; i >= 0; i-- {
		if err := unix.FsconfigSetString(fd, "lowerdir+", lowers[i]); err != nil {
			return fmt.Errorf("lowerdir+ %s (needs Linux 6.8 for %d layers): %w", lowers[i], len(lowers), err)
		}
	}
	if err := unix.FsconfigSetString(fd, "upperdir", upper); err != nil {
		return fmt.Errorf("upperdir: %w", err)
	}
	if err := unix.FsconfigSetString(fd, "workdir", work); err != nil {
		return fmt.Errorf("workdir: %w", err)
	}
	if indexOff {
		if err := unix.FsconfigSetString(fd, "index", "off"); err != nil {
			return fmt.Errorf("index=off: %w", err)
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// isMountPoint reports whether dir is a mount point.
func isMountPoint(dir string) bool {
	ok, err := mountinfo.Mounted(dir)
	return err == nil && ok
}

// unmountAll unmounts dir and everything mounted below it, deepest first;
// what stays busy is detached.
func unmountAll(dir string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return fmt.Errorf("list mounts under %s: %w", dir, err)
	}
	slices.SortFunc(mounts, func(a, b *mountinfo.Info) int { return len(b.Mountpoint) - len(a.Mountpoint) })
	var errs []error
	for _, m := range mounts {
		if err := unix.Unmount(m.Mountpoint, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m.Mountpoint, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Magic numbers of statfs(2) for the initramfs root.
const (
	ramfsMagic = 0x858458f6
	tmpfsMagic = 0x01021994
)

// needNoPivotRoot reports whether pivot_root(2) would fail because the
// process's root is the mount namespace's root mount, which has no parent:
// the kernel's initramfs (rootfs) when PID 1 runs from it without having
// made / a mount of its own (mounts.MakeRootPivotable) or switched root.
// Then containers are entered with MS_MOVE and chroot instead.
func needNoPivotRoot() (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return false, fmt.Errorf("statfs /: %w", err)
	}
	roots, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		return i.Mountpoint != "/", false
	})
	if err != nil {
		return false, fmt.Errorf("read mountinfo: %w", err)
	}
	return rootIsInitramfs(int64(st.Type), roots), nil
}

// rootIsInitramfs decides needNoPivotRoot from the statfs magic of / and
// the mounts on / in mountinfo order (the last one is visible): a ramfs or
// tmpfs root whose mount is its own parent (the namespace's root mount;
// the kernel's rootfs shows as "1 1 ... / / ... - rootfs rootfs").
func rootIsInitramfs(magic int64, roots []*mountinfo.Info) bool {
	if magic != unix.RAMFS_MAGIC && magic != unix.TMPFS_MAGIC {
		return false
	}
	if len(roots) == 0 {
		return false
	}
	r := roots[len(roots)-1]
	return r.ID == r.Parent
}
