package container

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	// Registers the device cgroup manager (an eBPF program on cgroup v2)
	// that libcontainer's cgroup managers need.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/boot/reaper"
	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/logs"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
	"github.com/photon-init/photon-init/pkg/containers/notify"
)

// Default locations.
const (
	DefaultStateDir     = "/run/photon/containers"
	DefaultDataDir      = "/var/lib/photon"
	DefaultLogDir       = "/var/log/photon"
	DefaultCgroupParent = "/photon"
	DefaultResolvConf   = "/etc/resolv.conf"
	DefaultNotifyDir    = "/run/photon/notify"
)

// Root filesystem modes, as recorded in a container's layer.json.
const (
	modeOverlay = "overlay"
	modeCopy    = "copy"
)

// Options configure a Runtime. Only Reaper is required.
type Options struct {
	// StateDir is libcontainer's state root (tmpfs: it must not outlive
	// the boot). Default DefaultStateDir.
	StateDir string
	// DataDir holds each container's files under containers/NAME: the
	// overlay's upper and work directories, the rootfs mount point, the
	// generated /etc files, config.json and anonymous volumes. Default
	// DefaultDataDir.
	DataDir string
	// VolumesDir holds the named volumes, one directory per name. Default
	// DataDir/volumes.
	VolumesDir string
	// LogDir holds the containers' log files, NAME.log. Default
	// DefaultLogDir.
	LogDir string
	// CgroupParent is the cgroup under which each container gets
	// CgroupParent/NAME (cgroupfs driver). Default DefaultCgroupParent.
	CgroupParent string
	// ResolvConf is copied into each container as /etc/resolv.conf; when
	// it does not exist the container gets an empty file. Default
	// DefaultResolvConf.
	ResolvConf string
	// NotifyDir holds each container's sd_notify socket, NAME/notify.sock
	// (tmpfs: a socket must not outlive the boot). Default
	// DefaultNotifyDir.
	NotifyDir string
	// Reaper creates every container process (see pkg/boot/reaper).
	Reaper *reaper.Reaper
	// Log receives the runtime's own messages; nil discards them.
	Log *slog.Logger
	// Console receives each container's output lines as "[NAME] line"; it
	// must not block (pkg/boot/console). Nil writes no console lines.
	Console io.Writer
	// LogDestinations, if set, gives further destinations of a
	// container's lines (an in-memory ring, say), asked for at every
	// Start. The container's Sink closes them at Destroy: a destination
	// that must outlive one run of the container gives a wrapper whose
	// Close does nothing.
	LogDestinations func(name string) []logs.Destination
	// LogRotation is the rotation of every container's log file (zero
	// values: the logs package's defaults); a manifest's logging section
	// overrides it for its container.
	LogRotation logs.Rotation
	// ConsoleLimit rate-limits each container's lines on the console
	// (zero values: the logs package's defaults).
	ConsoleLimit logs.ConsoleLimit
	// Network configures the containers' networks (bridge, netns and
	// address directories); the zero value takes the defaults.
	Network NetworkOptions
}

// Runtime creates and runs containers with libcontainer, in this process.
type Runtime struct {
	opts Options
	log  *slog.Logger

	// forceCopy makes Create flatten the image instead of mounting an
	// overlay, and forceNoPivot enters containers without pivot_root
	// (for tests of the fallbacks).
	forceCopy, forceNoPivot bool

	mu   sync.Mutex
	live map[string]*Container

	net *netState // the containers' networks (network.go)

	seccomp  seccompPrograms // compiled seccomp filters, by profile
	profiles seccompProfiles // Docker's default profile, shared
}

// New returns a Runtime, creating its directories.
func New(opts Options) (*Runtime, error) {
	if opts.Reaper == nil {
		return nil, errors.New("container runtime: no reaper (every child process must be created through it)")
	}
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	if opts.DataDir == "" {
		opts.DataDir = DefaultDataDir
	}
	if opts.VolumesDir == "" {
		opts.VolumesDir = filepath.Join(opts.DataDir, "volumes")
	}
	if opts.LogDir == "" {
		opts.LogDir = DefaultLogDir
	}
	if opts.CgroupParent == "" {
		opts.CgroupParent = DefaultCgroupParent
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = DefaultResolvConf
	}
	if opts.NotifyDir == "" {
		opts.NotifyDir = DefaultNotifyDir
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{opts.StateDir, filepath.Join(opts.DataDir, "containers"), opts.VolumesDir, opts.NotifyDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("container runtime: create %s: %w", d, err)
		}
	}
	return &Runtime{opts: opts, log: log, live: map[string]*Container{},
		net: newNetState(opts.Network, opts.StateDir, opts.DataDir)}, nil
}

// layerMeta records what a container's writable layer was made from, so
// that a container re-created from the same manifest and image keeps it
// (as Docker keeps a container's layer across restarts) and a changed one
// starts from a fresh layer.
type layerMeta struct {
	Inputs string `json:"inputs"` // digest of the manifest and the image
	Mode   string `json:"mode"`   // modeOverlay or modeCopy
}

// inputsDigest identifies a manifest (less its file name) and an image.
func inputsDigest(m *manifest.Container, img *image.Image) (string, error) {
	mc := *m
	mc.File = ""
	b, err := json.Marshal(struct {
		Manifest manifest.Container
		Digest   string
		Layers   []string
	}{mc, img.Digest, img.Layers})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Create makes the container described by m from img, ready to Start: its
// root filesystem mounted (an overlay of the image's layers under the
// container's writable layer, or a flattened copy where overlayfs is
// missing), volumes prepared, /etc/hostname, /etc/hosts and
// /etc/resolv.conf generated (config.json follows once it runs), its notify socket
// listening (see Notifications), and the libcontainer container created. The writable layer of an earlier container of the
// same name is kept when the manifest and the image are unchanged, and
// discarded otherwise; its anonymous volumes are kept in both cases (as
// Compose does). Remove discards both on request. A container of that
// name must not exist (Destroy it first).
func (r *Runtime) Create(ctx context.Context, m *manifest.Container, img *image.Image) (_ *Container, err error) {
	if m == nil || img == nil {
		return nil, errors.New("create container: no manifest or no image")
	}
	name := m.Name
	fail := func(err error) (*Container, error) {
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	if !manifest.ValidName(name) {
		return fail(fmt.Errorf("%q is not a container name", name))
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	r.mu.Lock()
	if _, ok := r.live[name]; ok {
		r.mu.Unlock()
		return fail(errors.New("a container of that name exists; destroy it first"))
	}
	r.live[name] = nil // reserved while being created
	r.mu.Unlock()
	defer func() {
		if err != nil {
			r.forget(name, nil)
		}
	}()
	if _, err := os.Stat(filepath.Join(r.opts.StateDir, name)); err == nil {
		r.log.Warn("container: destroying stale libcontainer state", "container", name)
		if err := r.destroyStale(ctx, name); err != nil {
			return fail(err)
		}
	}

	l := r.layout(name)
	defer func() {
		if err != nil {
			if uerr := unmountAll(l.rootfs); uerr != nil {
				r.log.Warn("container: unmount after a failed create", "container", name, "err", uerr)
			}
		}
	}()
	mode, err := r.prepareRootfs(ctx, m, img, l)
	if err != nil {
		return fail(err)
	}

	p, err := buildSpec(m, img, l, r.opts.CgroupParent, &r.profiles)
	if err != nil {
		return fail(err)
	}
	if err := r.attachNetwork(m, p, l); err != nil {
		return fail(err)
	}
	defer func() {
		if err != nil {
			if derr := r.detachNetwork(name); derr != nil {
				r.log.Warn("container: network after a failed create", "container", name, "err", derr)
			}
		}
	}()
	if err := r.prepareFiles(ctx, p, l); err != nil {
		return fail(err)
	}
	r.refreshHosts()
	var nl *notify.Listener
	if p.notify {
		if nl, err = notify.Listen(l.notifySock, notify.Options{Log: r.log.With("container", name)}); err != nil {
			return fail(err)
		}
		defer func() {
			if err != nil {
				nl.Close()
			}
		}()
	}
	noPivot, err := needNoPivotRoot()
	if err != nil {
		r.log.Warn("container: cannot tell whether pivot_root works; trying it", "err", err)
	}
	noPivot = noPivot || r.forceNoPivot
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:  name,
		NoPivotRoot: noPivot,
		Spec:        p.spec,
	})
	if err != nil {
		return fail(fmt.Errorf("convert the OCI spec: %w", err))
	}
	// The container's init loads the compiled program rather than
	// compiling the profile itself.
	if cfg.Seccomp, err = r.seccomp.withProgram(cfg.Seccomp); err != nil {
		return fail(err)
	}
	lc, err := libcontainer.Create(r.opts.StateDir, name, cfg)
	if err != nil {
		return fail(fmt.Errorf("libcontainer: %w", err))
	}
	c := newContainer(r, name, l, p, lc, mode, nl)
	c.rotation = r.opts.LogRotation
	if lg := m.Logging; lg != nil {
		c.rotation = c.rotation.Override(logs.Rotation{MaxSize: lg.MaxSize, MaxFiles: lg.MaxFiles})
	}
	r.mu.Lock()
	r.live[name] = c
	r.mu.Unlock()
	r.log.Debug("container created", "container", name, "rootfs", mode, "noPivotRoot", noPivot)
	return c, nil
}

// prepareRootfs mounts (or copies) the container's root filesystem,
// keeping or discarding its writable layer, and returns the mode used.
func (r *Runtime) prepareRootfs(ctx context.Context, m *manifest.Container, img *image.Image, l *layout) (string, error) {
	if len(img.Layers) == 0 {
		return "", errors.New("the image has no layers")
	}
	inputs, err := inputsDigest(m, img)
	if err != nil {
		return "", err
	}
	if err := unmountAll(l.rootfs); err != nil {
		return "", fmt.Errorf("unmount a stale root filesystem: %w", err)
	}
	var old layerMeta
	if b, err := os.ReadFile(l.meta); err == nil {
		_ = json.Unmarshal(b, &old)
	}
	mode := modeOverlay
	if r.forceCopy || !overlayAvailable() {
		mode = modeCopy
	}
	if old.Inputs != inputs || old.Mode != mode {
		if err := r.resetLayer(l); err != nil {
			return "", err
		}
	}
	for _, d := range []string{l.dir, l.upper, l.work, l.rootfs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := os.Chmod(l.rootfs, 0o755); err != nil {
		return "", err
	}
	// The overlay's root directory takes its mode and owner from the
	// upper directory: give it those of the image's root.
	if err := copyRootAttrs(img.Layers[len(img.Layers)-1], l.upper); err != nil {
		return "", err
	}
	if mode == modeOverlay {
		err := mountOverlay(img.Layers, l.upper, l.work, l.rootfs)
		if err == nil {
			return mode, writeMeta(l, inputs, mode)
		}
		if !errors.Is(err, errNoOverlay) {
			return "", err
		}
		r.log.Warn("container: overlayfs cannot be used; flattening the image into a copy (slower, uses disk)",
			"container", m.Name, "err", err)
		mode = modeCopy
		if err := r.resetLayer(l); err != nil {
			return "", err
		}
		if err := os.MkdirAll(l.rootfs, 0o755); err != nil {
			return "", err
		}
	}
	if old.Inputs != inputs || old.Mode != mode || isEmptyDir(l.rootfs) {
		if err := os.RemoveAll(l.rootfs); err != nil {
			return "", err
		}
		if err := image.Flatten(ctx, img, l.rootfs); err != nil {
			return "", err
		}
	}
	return mode, writeMeta(l, inputs, mode)
}

// copyRootAttrs gives dst the mode and owner of the directory src.
func copyRootAttrs(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		return fmt.Errorf("stat the image's root %s: %w", src, err)
	}
	if err := os.Chown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", dst, err)
	}
	if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod %s: %w", dst, err)
	}
	return nil
}

func isEmptyDir(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return true
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) == 0
}

func writeMeta(l *layout, inputs, mode string) error {
	b, _ := json.Marshal(layerMeta{Inputs: inputs, Mode: mode})
	if err := os.WriteFile(l.meta, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", l.meta, err)
	}
	return nil
}

// resetLayer discards the writable layer (or the flattened copy). The
// anonymous volumes stay, as Compose keeps them when it re-creates a
// container from a changed service; Remove discards them.
func (r *Runtime) resetLayer(l *layout) error {
	if err := unmountAll(l.rootfs); err != nil {
		return err
	}
	for _, d := range []string{l.upper, l.work, l.rootfs, l.meta} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove %s: %w", d, err)
		}
	}
	return nil
}

// prepareFiles creates the working directory, the volumes' host
// directories and the generated files (config.json comes later, see
// configFile).
func (r *Runtime) prepareFiles(ctx context.Context, p *plan, l *layout) error {
	// Docker creates a missing working directory (owned by root).
	cwd, err := securejoin.SecureJoin(l.rootfs, p.spec.Process.Cwd)
	if err != nil {
		return fmt.Errorf("working_dir: %w", err)
	}
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		return fmt.Errorf("create the working directory %s: %w", p.spec.Process.Cwd, err)
	}
	for _, v := range p.volumes {
		if err := prepareVolume(ctx, l.rootfs, v); err != nil {
			return err
		}
	}
	resolv, err := os.ReadFile(r.opts.ResolvConf)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", r.opts.ResolvConf, err)
	}
	files := []struct {
		path string
		data []byte
	}{
		{l.hostname, []byte(p.hostname + "\n")},
		{l.hosts, []byte(hostsFile(p.hostname))},
		{l.resolvConf, resolv},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	// The container's processes may run as any user: the directory is
	// searchable by all (the socket is writable by all).
	if err := os.MkdirAll(l.notifyDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", l.notifyDir, err)
	}
	if err := os.Chmod(l.notifyDir, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", l.notifyDir, err)
	}
	// config.json is written once the container runs (configFile); one
	// of an earlier container of that name must not pass for this one's.
	if err := os.Remove(l.config); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the earlier %s: %w", l.config, err)
	}
	return nil
}

// hostsFile is the container's /etc/hosts: the loopback names and the
// container's host name.
func hostsFile(hostname string) string {
	return "127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::\tip6-localnet\n" +
		"ff00::\tip6-mcastprefix\n" +
		"ff02::1\tip6-allnodes\n" +
		"ff02::2\tip6-allrouters\n" +
		"127.0.1.1\t" + hostname + "\n"
}

// prepareVolume creates a volume's host directory. A new named or
// anonymous volume gets what the image has at the target, as in Docker.
func prepareVolume(ctx context.Context, rootfs string, v volume) error {
	switch v.kind {
	case volumeHost:
		if _, err := os.Stat(v.source); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(v.source, 0o755); err != nil {
				return fmt.Errorf("volume %s: create host directory %s: %w", v.target, v.source, err)
			}
		} else if err != nil {
			return fmt.Errorf("volume %s: %w", v.target, err)
		}
		return nil
	case volumeData:
		if _, err := os.Lstat(v.source); err == nil {
			return nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("volume %s: %w", v.target, err)
		}
		if err := os.MkdirAll(filepath.Dir(v.source), 0o700); err != nil {
			return fmt.Errorf("volume %s: %w", v.target, err)
		}
		// Fill a temporary directory and rename it, so that a failed
		// copy is not taken for a volume next time.
		tmp := v.source + ".new"
		if err := os.RemoveAll(tmp); err != nil {
			return fmt.Errorf("volume %s: %w", v.target, err)
		}
		src, err := securejoin.SecureJoin(rootfs, v.target)
		if err != nil {
			return fmt.Errorf("volume %s: %w", v.target, err)
		}
		if fi, err := os.Stat(src); err == nil && fi.IsDir() {
			// A copy of one directory tree is a flatten of a one-layer
			// image: the merged root has no whiteouts left to apply.
			content := &image.Image{Ref: "the image's " + v.target, Layers: []string{src}}
			if err := image.Flatten(ctx, content, tmp); err != nil {
				return fmt.Errorf("volume %s: copy the image's content: %w", v.target, err)
			}
		} else if err := os.Mkdir(tmp, 0o755); err != nil {
			return fmt.Errorf("volume %s: %w", v.target, err)
		}
		if err := os.Rename(tmp, v.source); err != nil {
			return fmt.Errorf("volume %s: %w", v.target, err)
		}
	}
	return nil
}

// layout is where the files of the container name live.
func (r *Runtime) layout(name string) *layout {
	return newLayout(r.opts.DataDir, r.opts.VolumesDir, r.opts.NotifyDir, name)
}

// forget drops a name from the live set, if it still maps to c.
func (r *Runtime) forget(name string, c *Container) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.live[name]; ok && cur == c {
		delete(r.live, name)
	}
}

// Remove discards what a container leaves behind after Destroy: its
// writable layer, anonymous volumes, generated files and config.json (its
// log file and named volumes stay). The next Create of that name starts
// afresh. A container of that name must not exist.
func (r *Runtime) Remove(name string) error {
	if !manifest.ValidName(name) {
		return fmt.Errorf("remove container: %q is not a container name", name)
	}
	r.mu.Lock()
	_, live := r.live[name]
	r.mu.Unlock()
	if live {
		return fmt.Errorf("remove container %s: it exists; destroy it first", name)
	}
	l := r.layout(name)
	if err := unmountAll(l.dir); err != nil {
		return fmt.Errorf("remove container %s: %w", name, err)
	}
	for _, d := range []string{l.dir, l.notifyDir} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove container %s: %w", name, err)
		}
	}
	if err := r.releaseNetwork(name); err != nil {
		return fmt.Errorf("remove container %s: %w", name, err)
	}
	return nil
}

// Cleanup removes what an earlier run of photon-init left behind: it
// kills and destroys every libcontainer container in the state directory
// (removing its cgroup) and unmounts every root filesystem under the data
// directory, except those of containers this Runtime runs. Call it once at
// startup, before Create. Errors are collected; cleanup goes on past them.
func (r *Runtime) Cleanup(ctx context.Context) error {
	var errs []error
	entries, err := os.ReadDir(r.opts.StateDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("cleanup: %w", err))
	}
	r.mu.Lock()
	live := make(map[string]bool, len(r.live))
	for n := range r.live {
		live[n] = true
	}
	r.mu.Unlock()
	for _, e := range entries {
		if !e.IsDir() || live[e.Name()] {
			continue
		}
		r.log.Info("container: cleaning up after an earlier run", "container", e.Name())
		if err := r.destroyStale(ctx, e.Name()); err != nil {
			errs = append(errs, fmt.Errorf("cleanup %s: %w", e.Name(), err))
		}
	}
	containers := filepath.Join(r.opts.DataDir, "containers")
	dirs, _ := os.ReadDir(containers)
	for _, d := range dirs {
		if !d.IsDir() || live[d.Name()] {
			continue
		}
		if err := unmountAll(filepath.Join(containers, d.Name())); err != nil {
			errs = append(errs, fmt.Errorf("cleanup %s: %w", d.Name(), err))
		}
	}
	sockets, _ := os.ReadDir(r.opts.NotifyDir)
	for _, d := range sockets {
		if live[d.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(r.opts.NotifyDir, d.Name())); err != nil {
			errs = append(errs, fmt.Errorf("cleanup %s: %w", d.Name(), err))
		}
	}
	errs = append(errs, r.cleanupNetwork(live))
	return errors.Join(errs...)
}

// destroyStale kills and destroys a libcontainer container left in the
// state directory.
func (r *Runtime) destroyStale(ctx context.Context, id string) error {
	lc, err := libcontainer.Load(r.opts.StateDir, id)
	if err != nil {
		if rerr := os.RemoveAll(filepath.Join(r.opts.StateDir, id)); rerr != nil {
			return fmt.Errorf("remove unreadable state (%w): %w", err, rerr)
		}
		return nil
	}
	st, err := lc.Status()
	if err == nil && st == libcontainer.Paused {
		_ = lc.Resume()
	}
	if err == nil && st != libcontainer.Stopped {
		if err := lc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			r.log.Warn("container: kill stale container", "container", id, "err", err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := lc.Status()
			if err != nil || st == libcontainer.Stopped {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("stale container %s does not die", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := lc.Destroy(); err != nil {
		return fmt.Errorf("destroy stale container: %w", err)
	}
	return nil
}
