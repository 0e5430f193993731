package mounts

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
)

// UnmountAll unmounts every filesystem below under ("/" at shutdown; never
// "/" itself, which is remounted read-only at the end when under is "/")
// in reverse mount order, so that nested mounts go first. A busy
// filesystem is retried, then remounted read-only and detached lazily; no
// single unmount may take longer than perMount (a hung network filesystem
// must not stop a poweroff). It returns the mount points that could not be
// cleanly unmounted.
func UnmountAll(ctx context.Context, log *slog.Logger, under string, perMount time.Duration) []string {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		log.Error("shutdown: read mount table", "err", err)
		return nil
	}
	// The table is in mount order; unmount newest first. Sort by ID as a
	// tie-break for tables that were re-ordered by moves.
	sort.SliceStable(mounts, func(i, j int) bool { return mounts[i].ID > mounts[j].ID })
	var failed []string
	for _, m := range mounts {
		if ctx.Err() != nil {
			failed = append(failed, m.Mountpoint)
			continue
		}
		if m.Mountpoint == "/" || !within(m.Mountpoint, under) {
			continue
		}
		if err := unmountOne(m, perMount); err != nil {
			log.Warn("shutdown: unmount", "path", m.Mountpoint, "err", err)
			failed = append(failed, m.Mountpoint)
		}
	}
	if under == "/" && ctx.Err() == nil {
		// The root itself cannot be unmounted: a disk root (after
		// switch_root) is made clean by remounting it read-only.
		if err := withTimeout(perMount, func() error {
			return unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
		}); err != nil {
			log.Warn("shutdown: remount / read-only", "err", err)
			failed = append(failed, "/ (read-only)")
		}
	}
	return failed
}

// withTimeout runs fn in the background and waits for it at most limit.
func withTimeout(limit time.Duration, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- safe.Call("unmount", fn) }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		return fmt.Errorf("still running after %v; left behind", limit)
	}
}

// unmountOne tries a clean unmount a few times, then read-only plus lazy.
func unmountOne(m *mountinfo.Info, limit time.Duration) error {
	return withTimeout(limit, func() error {
		var err error
		for i := 0; i < 3; i++ {
			if err = unix.Unmount(m.Mountpoint, 0); err == nil || err == unix.EINVAL || err == unix.ENOENT {
				return nil
			}
			if err != unix.EBUSY {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		ro := unix.Mount("", m.Mountpoint, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
		lazy := unix.Unmount(m.Mountpoint, unix.MNT_DETACH)
		if lazy == nil {
			return nil
		}
		parts := []string{"unmount: " + err.Error()}
		if ro != nil {
			parts = append(parts, "remount read-only: "+ro.Error())
		}
		parts = append(parts, "lazy unmount: "+lazy.Error())
		return fmt.Errorf("%s", strings.Join(parts, "; "))
	})
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	dir = strings.TrimSuffix(dir, "/")
	return path == dir || strings.HasPrefix(path, dir+"/")
}
