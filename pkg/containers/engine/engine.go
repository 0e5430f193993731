// Package engine wires the container parts together: it loads the
// manifests, opens the image store with every image source, makes the
// libcontainer runtime, and hands them to the supervisor. The same Engine is
// the machine's workload under PID 1 and the whole program of
// "photon-init run --root DIR" on a host that has an init already.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/boot/reaper"
	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/containers/container"
	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/image/aci"
	"github.com/photon-init/photon-init/pkg/containers/image/registry"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
	"github.com/photon-init/photon-init/pkg/containers/notify"
	"github.com/photon-init/photon-init/pkg/containers/supervisor"
)

// Paths are where the engine finds manifests and keeps its files.
type Paths struct {
	Manifests  string // container manifests: /etc/photon/containers
	Data       string // image store, container layers, volumes: /var/lib/photon
	Logs       string // container logs: /var/log/photon
	State      string // libcontainer state (tmpfs): /run/photon/containers
	Notify     string // containers' sd_notify sockets: /run/photon/notify
	ResolvConf string // copied into containers: /etc/resolv.conf
	AuthFile   string // registry credentials: /etc/photon/auth.json
}

// PathsUnder returns the standard paths under root ("/" on a machine, a
// directory for "photon-init run --root DIR").
func PathsUnder(root string) Paths {
	j := func(p string) string { return filepath.Join(root, p) }
	return Paths{
		Manifests:  j(config.DefaultContainersDir),
		Data:       j("/var/lib/photon"),
		Logs:       j("/var/log/photon"),
		State:      j("/run/photon/containers"),
		Notify:     j("/run/photon/notify"),
		ResolvConf: j("/etc/resolv.conf"),
		AuthFile:   j(config.DefaultAuthFile),
	}
}

// Env is what the engine is given when it starts.
type Env struct {
	Log *slog.Logger
	// Console takes container output lines; writes must never block.
	Console io.Writer
	// Reaper creates every container process.
	Reaper *reaper.Reaper
	// Config is the machine configuration (registries; a nil Config is
	// the empty one).
	Config *config.Config
	// NetworkOnline, if set, is closed once the machine's network is
	// online: registry pulls wait for it. Nil means the network is
	// assumed ready (a host under another init).
	NetworkOnline <-chan struct{}
	// CgroupParent is the cgroup under which each container gets its own
	// ("" = the runtime's default, /photon).
	CgroupParent string
}

// Engine runs the containers declared in a manifest directory.
type Engine struct {
	paths Paths

	mu  sync.Mutex
	sup *supervisor.Supervisor
}

// New returns an engine for paths; Start starts it.
func New(paths Paths) *Engine { return &Engine{paths: paths} }

// Start loads the manifests and starts the containers in the background.
// Manifest problems are reported and kept as those containers' state; only
// a failure to set up the store or the runtime is an error, and then no
// container starts.
func (e *Engine) Start(ctx context.Context, env Env) error {
	log := env.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := env.Config
	if cfg == nil {
		cfg = &config.Config{}
	}
	if cfg.Containers.Dir != "" {
		e.paths.Manifests = cfg.Containers.Dir
	}
	cs, invalid, err := load(e.paths.Manifests)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			log.Info("containers: none declared", "dir", e.paths.Manifests)
			return nil
		}
		return err
	}
	if len(cs) == 0 && len(invalid) == 0 {
		log.Info("containers: none declared", "dir", e.paths.Manifests)
		return nil
	}

	if err := e.paths.ensureDirs(); err != nil {
		return err
	}
	authFile := cfg.Registries.AuthFile
	if authFile == "" {
		authFile = e.paths.AuthFile
	}
	pull, err := registry.NewSource(registry.Options{Insecure: cfg.Registries.Insecure, AuthFile: authFile})
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	store, err := image.Open(e.paths.Data,
		image.WithLogger(log),
		image.WithSource(image.TransportRegistry, pull),
		image.WithSource(image.TransportACI, aci.NewSource))
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	rt, err := container.New(container.Options{
		StateDir:     e.paths.State,
		NotifyDir:    e.paths.Notify,
		DataDir:      e.paths.Data,
		LogDir:       e.paths.Logs,
		ResolvConf:   e.paths.ResolvConf,
		CgroupParent: env.CgroupParent,
		Reaper:       env.Reaper,
		Log:          log,
		Console:      env.Console,
	})
	if err != nil {
		return fmt.Errorf("container runtime: %w", err)
	}
	if err := rt.Cleanup(ctx); err != nil {
		log.Warn("containers: cleaning up after an earlier run", "err", err)
	}
	sup := supervisor.New(supervisor.Options{
		Images:        store,
		Runtime:       runtime{rt},
		Log:           log,
		NetworkOnline: env.NetworkOnline,
		Remote:        func(ref string) bool { return isRemote(ref) && !stored(store, ref) },
	})
	e.mu.Lock()
	e.sup = sup
	e.mu.Unlock()
	log.Info(fmt.Sprintf("containers: starting %d (%d invalid)", len(cs), len(invalid)))
	sup.Start(ctx, cs, invalid)
	return nil
}

// Stop stops every container in reverse dependency order.
func (e *Engine) Stop(ctx context.Context) error {
	e.mu.Lock()
	sup := e.sup
	e.mu.Unlock()
	if sup == nil {
		return nil
	}
	return sup.Stop(ctx)
}

// Status returns every container's state; nil before Start.
func (e *Engine) Status() []supervisor.Status {
	e.mu.Lock()
	sup := e.sup
	e.mu.Unlock()
	if sup == nil {
		return nil
	}
	return sup.Status()
}

// load reads the manifest directory: the valid containers, and one Invalid
// per rejected file with all of that file's problems.
func load(dir string) ([]*manifest.Container, []supervisor.Invalid, error) {
	cs, errs := manifest.LoadDir(dir)
	byFile := map[string][]string{}
	var files []string
	for _, err := range errs {
		var me *manifest.Error
		if !errors.As(err, &me) || me.File == "" || me.File == dir {
			// The directory itself could not be read.
			return nil, nil, fmt.Errorf("containers %s: %w", dir, err)
		}
		if _, seen := byFile[me.File]; !seen {
			files = append(files, me.File)
		}
		byFile[me.File] = append(byFile[me.File], err.Error())
	}
	var invalid []supervisor.Invalid
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		invalid = append(invalid, supervisor.Invalid{Name: name, File: f, Err: errors.New(strings.Join(byFile[f], "\n"))})
	}
	return cs, invalid, nil
}

// runtime adapts container.Runtime to the supervisor's interface.
type runtime struct{ rt *container.Runtime }

func (r runtime) Create(ctx context.Context, m *manifest.Container, img *image.Image) (supervisor.Instance, error) {
	c, err := r.rt.Create(ctx, m, img)
	if err != nil {
		return nil, err
	}
	return newInstance(c), nil
}

// instance adapts container.Container to supervisor.Instance.
type instance struct {
	c      *container.Container
	notify <-chan supervisor.Notification
}

func newInstance(c *container.Container) instance {
	return instance{c: c, notify: forwardNotifications(c.Notifications())}
}

// forwardNotifications turns the runtime's sd_notify messages into the
// supervisor's. The runtime merges messages while its reader is slow; here
// only messages that change no state are dropped when the supervisor lags.
func forwardNotifications(in <-chan notify.Message) <-chan supervisor.Notification {
	out := make(chan supervisor.Notification, 16)
	go func() {
		defer close(out)
		for m := range in {
			n := supervisor.Notification{Ready: m.Ready, Stopping: m.Stopping, Reloading: m.Reloading, Watchdog: m.Watchdog}
			if m.StatusSet {
				n.Status = m.Status
			}
			if n.Ready || n.Stopping || n.Reloading || m.StatusSet {
				out <- n
				continue
			}
			select {
			case out <- n:
			default: // a watchdog ping while the supervisor lags: the next one counts
			}
		}
	}()
	return out
}

func (i instance) Start(ctx context.Context) error { return i.c.Start(ctx) }
func (i instance) Destroy() error                  { return i.c.Destroy() }
func (i instance) Pid() int                        { return i.c.Pid() }

func (i instance) Exec(ctx context.Context, argv []string, timeout time.Duration) (int, []byte, error) {
	return i.c.Run(ctx, argv, timeout)
}

func (i instance) Notifications() <-chan supervisor.Notification { return i.notify }

func (i instance) Wait(ctx context.Context) (supervisor.Exit, error) {
	e, err := i.c.Wait(ctx)
	if err != nil {
		return supervisor.Exit{}, err
	}
	x := supervisor.Exit{Code: e.Code, OOM: e.OOM}
	if e.Signal != 0 {
		x.Signal = unixSignalName(e.Signal)
	}
	return x, nil
}

func (i instance) Stop(ctx context.Context, sig syscall.Signal, grace time.Duration) error {
	return i.c.Stop(ctx, sig, grace)
}

// ensureDirs creates the directories the engine writes into.
func (p Paths) ensureDirs() error {
	for _, d := range []string{p.Data, p.Logs, p.State} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
	}
	return nil
}

func unixSignalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}

// isRemote reports whether ref is pulled from a registry.
func isRemote(ref string) bool {
	r, err := image.ParseReference(ref)
	return err == nil && r.Transport == image.TransportRegistry
}

// stored reports whether the store has a record for ref already (an image
// preloaded into the initramfs, or pulled on an earlier boot): it is then
// started without waiting for the network.
func stored(s *image.Store, ref string) bool {
	_, err := os.Stat(filepath.Join(s.Root(), image.RecordPath(ref)))
	return err == nil
}
