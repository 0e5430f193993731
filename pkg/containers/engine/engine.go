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
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/boot/reaper"
	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/containers/container"
	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/image/aci"
	"github.com/photon-init/photon-init/pkg/containers/image/registry"
	"github.com/photon-init/photon-init/pkg/containers/logs"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
	"github.com/photon-init/photon-init/pkg/containers/supervisor"
	"github.com/photon-init/photon-init/pkg/containers/watch"
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
	// ResolvConf, if set, gives the machine's current resolv.conf and a
	// channel closed at its next change (pkg/net/hostnet): every
	// container's /etc/resolv.conf is rewritten in place when it changes.
	ResolvConf func() ([]byte, <-chan struct{})
	// CgroupParent is the cgroup under which each container gets its own
	// ("" = the runtime's default, /photon).
	CgroupParent string
}

// Engine runs the containers declared in a manifest directory.
type Engine struct {
	paths Paths

	mu    sync.Mutex
	lg    *slog.Logger
	sup   *supervisor.Supervisor
	rt    *container.Runtime
	rings *logs.Rings
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
	cs, errs := manifest.LoadDir(e.paths.Manifests)
	if len(errs) == 1 && errors.Is(errs[0], fs.ErrNotExist) {
		errs = nil // none declared yet; the watcher picks up a directory made later
	}
	invalid := supervisor.InvalidFromErrors(errs)

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
	var subnet netip.Prefix
	if sn := cfg.Network.Bridge.Subnet; sn != "" {
		if subnet, err = config.ParseSubnet(sn); err != nil {
			return fmt.Errorf("network.bridge.subnet: %w", err) // validated with init.yaml already
		}
	}
	cl := cfg.Containers.Logs
	rings := logs.NewRings(logs.RingOptions{Dir: e.paths.Logs})
	rt, err := container.New(container.Options{
		LogDestinations: rings.Destinations,
		Network:         container.NetworkOptions{Bridge: cfg.Network.Bridge.Name, Subnet: subnet},
		LogRotation:     logs.Rotation{MaxSize: int64(cl.MaxSize), MaxFiles: cl.MaxFiles},
		ConsoleLimit:    logs.ConsoleLimit{LinesPerSecond: float64(cl.ConsoleLinesPerSecond), Burst: cl.ConsoleBurst},
		StateDir:        e.paths.State,
		NotifyDir:       e.paths.Notify,
		DataDir:         e.paths.Data,
		LogDir:          e.paths.Logs,
		ResolvConf:      e.paths.ResolvConf,
		CgroupParent:    env.CgroupParent,
		Reaper:          env.Reaper,
		Log:             log,
		Console:         env.Console,
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
		OnEvent: func(ev supervisor.Event) {
			if ev.To == supervisor.StateRemoved {
				rings.Remove(ev.Container) // its followers end
				// Its writable layer, anonymous volumes and address go
				// with its manifest (named volumes and the log stay).
				name := ev.Container
				safe.Go(log, "remove "+name, func() {
					if err := rt.Remove(name); err != nil {
						log.Warn(fmt.Sprintf("container %s: remove: %v", name, err))
					}
				})
			}
		},
		Remote: func(ref string) bool { return isRemote(ref) && !stored(store, ref) },
	})
	e.mu.Lock()
	e.sup, e.rt, e.rings, e.lg = sup, rt, rings, log
	e.mu.Unlock()
	if len(cs)+len(invalid) == 0 {
		log.Info("containers: none declared", "dir", e.paths.Manifests)
	} else {
		log.Info(fmt.Sprintf("containers: starting %d (%d invalid)", len(cs), len(invalid)))
	}
	sup.Start(ctx, withImplicitDependencies(cs), invalid)
	if env.ResolvConf != nil {
		safe.Go(log, "resolv.conf", func() { e.followResolvConf(ctx, log, env.ResolvConf) })
	}
	safe.Go(log, "manifest watcher", func() {
		err := watch.Run(ctx, watch.Options{Dir: e.paths.Manifests, Log: log}, func(set watch.Set) {
			sup.Reconcile(ctx, withImplicitDependencies(set.Containers), supervisor.InvalidFromErrors(set.Errors))
		})
		if err != nil && ctx.Err() == nil {
			log.Warn("containers: no hot reload of "+e.paths.Manifests, "err", err)
		}
	})
	return nil
}

// Stop stops every container in reverse dependency order.
func (e *Engine) Stop(ctx context.Context) error {
	e.mu.Lock()
	sup, rt := e.sup, e.rt
	e.mu.Unlock()
	if sup == nil {
		return nil
	}
	if err := sup.Stop(ctx); err != nil {
		return err
	}
	// Every container is destroyed: release the runtime's own mounts.
	return rt.Close()
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

// runtime adapts container.Runtime to the supervisor's interface.
type runtime struct{ rt *container.Runtime }

func (r runtime) Create(ctx context.Context, m *manifest.Container, img *image.Image) (supervisor.Instance, error) {
	c, err := r.rt.Create(ctx, m, img)
	if err != nil {
		return nil, err
	}
	return newInstance(c), nil
}

// instance adapts container.Container to supervisor.Instance. The
// runtime's sd_notify messages are the supervisor's Notifications as they
// are (no goroutine converts them).
type instance struct{ c *container.Container }

func newInstance(c *container.Container) instance { return instance{c: c} }

func (i instance) Start(ctx context.Context) error { return i.c.Start(ctx) }
func (i instance) Destroy() error                  { return i.c.Destroy() }
func (i instance) Pid() int                        { return i.c.Pid() }

func (i instance) Exec(ctx context.Context, argv []string, timeout time.Duration) (int, []byte, error) {
	return i.c.Run(ctx, argv, timeout)
}

func (i instance) Notifications() <-chan supervisor.Notification { return i.c.Notifications() }

func (i instance) Done() <-chan struct{} { return i.c.Done() }

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

// Events returns the latest container state changes, oldest first; nil
// before Start.
func (e *Engine) Events() []supervisor.Event {
	e.mu.Lock()
	sup := e.sup
	e.mu.Unlock()
	if sup == nil {
		return nil
	}
	return sup.Events()
}

// log is the engine's logger (a discarding one before Start).
func (e *Engine) log() *slog.Logger {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lg == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.lg
}

// withImplicitDependencies adds what a manifest implies without saying it:
// network_mode container:NAME needs NAME created first (its network
// namespace is joined) and joined again when NAME restarts — a required
// service_started dependency with restart.
func withImplicitDependencies(cs []*manifest.Container) []*manifest.Container {
	for _, c := range cs {
		target := c.NetworkContainer()
		if target == "" {
			continue
		}
		if _, ok := c.DependsOn[target]; ok {
			continue
		}
		if c.DependsOn == nil {
			c.DependsOn = map[string]manifest.Dependency{}
		}
		c.DependsOn[target] = manifest.Dependency{Condition: manifest.ConditionStarted, Required: true, Restart: true}
	}
	return cs
}

// followResolvConf rewrites every container's /etc/resolv.conf (the file
// the runtime generated and bind-mounted, DATA/containers/NAME/resolv.conf)
// in place, same inode, whenever the machine's changes: a DHCP lease that
// arrives after a container started reaches it.
func (e *Engine) followResolvConf(ctx context.Context, log *slog.Logger, current func() ([]byte, <-chan struct{})) {
	for {
		_, changed := current()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		data, _ := current()
		files, _ := filepath.Glob(filepath.Join(e.paths.Data, "containers", "*", "resolv.conf"))
		for _, f := range files {
			if err := os.WriteFile(f, data, 0o644); err != nil {
				log.Warn("containers: update resolv.conf", "file", f, "err", err)
			}
		}
	}
}
