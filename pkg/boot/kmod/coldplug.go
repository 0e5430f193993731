package kmod

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// maxColdplugPasses bounds Coldplug's passes; each pass but the last must
// find a device it has not seen, so the bound only guards against a kernel
// that keeps creating devices.
const maxColdplugPasses = 32

// Coldplug loads the modules for the devices already present, as udev's
// "trigger" does at boot: it walks sysfsRoot/devices (without following
// symlinks) for modalias files, matches each new modalias against the
// index's aliases, and loads the matching modules with their dependencies.
// Loading a driver can create devices (virtio_pci creates the virtio
// devices, button an input device), so it goes on until a round finds no
// modalias it has not seen. The devices of later rounds come from the
// kernel's uevents, subscribed to before the walk (see Loader.Uevents);
// without them, or when events were lost, each round walks sysfs again.
//
// It returns one Result per module it loaded or failed to load (modules
// already loaded are not reported) and an error joining the failures; a
// failure never stops the other modules. Only a sysfs that cannot be read
// at all, or ctx, ends it early.
func (l *Loader) Coldplug(ctx context.Context, sysfsRoot string) ([]Result, error) {
	events := l.openUevents()
	if events != nil {
		defer events.Close()
	}
	return l.ColdplugEvents(ctx, sysfsRoot, events)
}

// ColdplugEvents is Coldplug with a subscription the caller opened (nil:
// none) and keeps: after it, the caller can go on with Follow on the same
// subscription, missing no device.
func (l *Loader) ColdplugEvents(ctx context.Context, sysfsRoot string, events UeventSource) ([]Result, error) {
	root := filepath.Join(sysfsRoot, "devices")
	seen := map[string]bool{}
	reported := map[string]bool{}
	var results []Result
	start := time.Now()
	passes, walks := 0, 0
	for ctx.Err() == nil {
		if passes == maxColdplugPasses {
			l.log().Warn("kmod: coldplug stopped: devices kept appearing", "passes", passes)
			break
		}
		passes++
		var fresh []string
		note := func(modalias string) {
			if !seen[modalias] {
				seen[modalias] = true
				fresh = append(fresh, modalias)
			}
		}
		walkStart := time.Now()
		walk := passes == 1 || events == nil
		if !walk {
			ms, err := events.Modaliases()
			for _, m := range ms {
				note(m)
			}
			if err != nil {
				l.log().Debug("kmod: coldplug walks sysfs again", "err", err)
				walk = true
			}
		}
		if walk {
			walks++
			if err := walkModaliases(root, note); err != nil {
				return results, fmt.Errorf("coldplug: walk %s: %w", root, err)
			}
		}
		if len(fresh) == 0 {
			break
		}
		findTime := time.Since(walkStart)
		loaded := 0
		for _, r := range l.LoadModaliases(ctx, fresh...) {
			if reported[r.Name] {
				continue
			}
			reported[r.Name] = true
			if r.Status == Loaded {
				loaded++
			}
			results = append(results, r)
		}
		l.log().Debug("kmod: coldplug pass", "pass", passes, "walked", walk, "new_modaliases", len(fresh), "loaded", loaded,
			"find", findTime.Round(time.Microsecond))
	}
	l.log().Debug("kmod: coldplug done", "passes", passes, "walks", walks, "modaliases", len(seen), "duration", time.Since(start).Round(time.Microsecond))
	return results, resultsError(ctx, results)
}

// openUevents subscribes to device events, or returns nil (Coldplug then
// walks sysfs every round).
func (l *Loader) openUevents() UeventSource {
	open := l.Uevents
	if open == nil {
		open = OpenKernelUevents
	}
	events, err := open()
	if err != nil {
		l.log().Debug("kmod: no uevents; coldplug walks sysfs after every round of loads", "err", err)
		return nil
	}
	return events
}

// walkModaliases calls fn with the content of every regular file named
// "modalias" below dir, not following symlinks. Subdirectories that cannot
// be read (devices vanish) are skipped; only an unreadable dir is an error.
//
// This is on the boot path, so it talks to the kernel directly: each
// directory costs openat (relative to its parent, O_NOFOLLOW), getdents64
// and close, with buffers reused across directories; os.ReadDir would add
// the poller registration, finalizers and a sort per directory.
func walkModaliases(dir string, fn func(string)) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	w := sysfsWalker{fn: fn}
	err = w.walk(fd, 0)
	unix.Close(fd)
	if err != nil {
		return &os.PathError{Op: "getdents", Path: dir, Err: err}
	}
	return nil
}

// maxSysfsDepth bounds the recursion; sysfs device paths are far shallower.
const maxSysfsDepth = 64

type sysfsWalker struct {
	fn    func(string)
	bufs  [][]byte // one getdents buffer per depth
	names [][]string
	read  [4096]byte
}

// walk reads the directory open at fd, reports its modalias file and walks
// its subdirectories.
func (w *sysfsWalker) walk(fd, depth int) error {
	if depth >= maxSysfsDepth {
		return nil
	}
	if len(w.bufs) <= depth {
		w.bufs = append(w.bufs, make([]byte, 16*1024))
		w.names = append(w.names, nil)
	}
	buf := w.bufs[depth]
	subdirs := w.names[depth][:0]
	hasModalias := false
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return err
		}
		if n <= 0 {
			break
		}
		for off := 0; off < n; {
			// struct linux_dirent64: ino u64, off s64, reclen u16,
			// type u8, name (NUL-terminated).
			reclen := int(buf[off+16]) | int(buf[off+17])<<8
			typ := buf[off+18]
			name := buf[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			off += reclen
			switch typ {
			case unix.DT_DIR:
				switch string(name) {
				case ".", "..":
				case "power":
					// Every device's power-management attribute
					// group: flat, no modalias, and its name cannot
					// be a child device's (it would collide). It is
					// 40% of the directories of /sys/devices.
				default:
					subdirs = append(subdirs, string(name))
				}
			case unix.DT_REG:
				if string(name) == "modalias" {
					hasModalias = true
				}
			}
		}
	}
	w.names[depth] = subdirs
	if hasModalias {
		w.readModalias(fd)
	}
	for _, name := range subdirs {
		cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		_ = w.walk(cfd, depth+1)
		unix.Close(cfd)
	}
	return nil
}

func (w *sysfsWalker) readModalias(dirfd int) {
	fd, err := unix.Openat(dirfd, "modalias", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, w.read[:])
	if err != nil || n <= 0 {
		return
	}
	if s := strings.TrimSpace(string(w.read[:n])); s != "" {
		w.fn(s)
	}
}

// LoadModaliases loads the modules matching the given modaliases, with
// their dependencies, and returns the results of the modules it loaded or
// failed to load (not those loaded already).
func (l *Loader) LoadModaliases(ctx context.Context, modaliases ...string) []Result {
	var matched []*Module
	for _, a := range modaliases {
		matched = append(matched, l.Index.MatchAlias(a)...)
	}
	if len(matched) == 0 {
		return nil
	}
	var results []Result
	for _, r := range l.LoadModules(ctx, l.Index.Closure(matched...)) {
		if r.Status != AlreadyLoaded {
			results = append(results, r)
		}
	}
	return results
}

// Follow loads the modules of the devices the kernel adds from now on (a
// disk or a card plugged into the running machine), until ctx ends or the
// subscription fails; it closes events when it returns. loader gives the
// Loader for each batch of devices (nil: no modules), so that a switch to
// another root's module directory is followed. When events were lost it
// walks sysfsRoot/devices once to catch up. Failures are logged; it
// returns the subscription's error, or nil when ctx ended.
func Follow(ctx context.Context, events UeventSource, sysfsRoot string, loader func() *Loader, log *slog.Logger) error {
	defer events.Close()
	for {
		if err := events.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("hotplug: %w", err)
		}
		mods, err := events.Modaliases()
		switch {
		case errors.Is(err, ErrUeventsLost):
			log.Warn("kmod: hotplug events lost; walking sysfs", "err", err)
			root := filepath.Join(sysfsRoot, "devices")
			if werr := walkModaliases(root, func(m string) { mods = append(mods, m) }); werr != nil {
				log.Warn("kmod: hotplug: walk", "err", werr)
			}
		case err != nil:
			return fmt.Errorf("hotplug: %w", err)
		}
		if len(mods) == 0 {
			continue
		}
		if l := loader(); l != nil {
			l.LoadModaliases(ctx, mods...) // each load and failure is logged
		}
	}
}
