// Package netnsdir keeps named network namespaces as files in a
// directory, the way "ip netns" keeps them in /run/netns: a namespace is
// created by a locked thread that unshares its network namespace,
// bind-mounts /proc/thread-self/ns/net onto DIR/NAME (which holds the
// namespace alive) and goes back to its own namespace. Anything
// that can open a path can then join it — libcontainer joins a container's
// network namespace by path — and it outlives every process in it until
// Remove unmounts the file.
//
// The directory itself is made a shared bind mount of itself (as CNI and
// iproute2 do), so that when a container's mount namespace holds a copy
// of these mounts (runc makes the copies slaves), removing a namespace
// here unmounts the copies too and the namespace is really freed.
package netnsdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Dir is a directory of named network namespaces.
type Dir struct {
	path string
}

// Open returns the namespace directory at path, creating it and making it
// a shared mount point.
func Open(path string) (*Dir, error) {
	path = filepath.Clean(path)
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("netns dir %s: %w", path, err)
	}
	mounted, err := mountinfo.Mounted(path)
	if err != nil {
		return nil, fmt.Errorf("netns dir %s: %w", path, err)
	}
	if !mounted {
		if err := unix.Mount(path, path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return nil, fmt.Errorf("netns dir %s: bind mount: %w", path, err)
		}
	}
	if err := unix.Mount("", path, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return nil, fmt.Errorf("netns dir %s: make shared: %w", path, err)
	}
	return &Dir{path: path}, nil
}

// Path is the file of namespace name.
func (d *Dir) Path(name string) string { return filepath.Join(d.path, name) }

// Create makes a new, empty network namespace (its loopback is down) held
// by the file Path(name). A file left there by an earlier run is removed
// first. It returns the file's path.
func (d *Dir) Create(name string) (string, error) {
	if !validName(name) {
		return "", fmt.Errorf("netns %q: not a file name", name)
	}
	p := d.Path(name)
	if err := d.Remove(name); err != nil {
		return "", err
	}
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", fmt.Errorf("netns %s: %w", name, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread goes into the new namespace and back. Should it not
		// get back, the goroutine ends locked and the runtime ends the
		// thread rather than reuse it (or, on the main thread, parks it).
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open the current namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := "/proc/thread-self/ns/net"
		merr := unix.Mount(src, p, "", unix.MS_BIND, "")
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(merr, fmt.Errorf("back to the original namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		if merr != nil {
			errc <- fmt.Errorf("bind mount %s: %w", src, merr)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(p)
		return "", fmt.Errorf("netns %s: %w", name, err)
	}
	return p, nil
}

// Remove unmounts and removes namespace name's file; the namespace is
// freed once no process is in it any more. A missing file is no error.
func (d *Dir) Remove(name string) error {
	if !validName(name) {
		return fmt.Errorf("netns %q: not a file name", name)
	}
	p := d.Path(name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns %s: unmount: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	return nil
}

// List returns the names of the namespace files in the directory.
func (d *Dir) List() ([]string, error) {
	ents, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("netns dir %s: %w", d.path, err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func validName(s string) bool {
	return s != "" && s != "." && s != ".." && filepath.Base(s) == s
}

// Unmount removes every namespace file and unmounts the directory's own
// bind mount (for tests and tools; photon-init keeps it for its life).
func (d *Dir) Unmount() error {
	names, err := d.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, d.Remove(n))
	}
	if err := unix.Unmount(d.path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		errs = append(errs, fmt.Errorf("netns dir %s: unmount: %w", d.path, err))
	}
	return errors.Join(errs...)
}
