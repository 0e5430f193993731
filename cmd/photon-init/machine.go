package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/boot"
	"github.com/photon-init/photon-init/pkg/boot/kmod"
	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/containers/engine"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// machineOptions wires the packages that the boot sequence drives.
func machineOptions(sandbox bool, configPath string) boot.Options {
	mods := &moduleLoader{}
	return boot.Options{
		Version:     version,
		PID1Start:   pid1Start,
		Sandbox:     sandbox,
		ConfigPath:  configPath,
		LoadModules: mods.loadDeclared,
		Coldplug:    mods.coldplug,
		Workload:    containerWorkload{engine.New(engine.PathsUnder("/"))},
		// Go's default GC target while booting (fewer collections on the
		// boot path), the supervisor's once booted.
		AfterBoot: func() { tuneGC(os.Getenv) },
	}
}

// moduleLoader loads modules from the running kernel's module directory
// (the initramfs's, or the real root's after a switch) with one kmod.Loader
// per directory, so the index is read once and loads are serialised.
type moduleLoader struct {
	mu     sync.Mutex
	key    string // the directory's path, device and inode
	loader *kmod.Loader
}

// get returns the loader for the running kernel's module directory, or nil
// when there is none.
func (ml *moduleLoader) get(log *slog.Logger) (*kmod.Loader, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	dir := "/lib/modules/" + unix.ByteSliceToString(uts.Release[:])
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			log.Info("kmod: no modules for this kernel", "dir", dir)
			return nil, nil
		}
		return nil, fmt.Errorf("stat %s: %w", dir, err)
	}
	key := fmt.Sprintf("%s %d:%d", dir, st.Dev, st.Ino) // another after switch_root
	ml.mu.Lock()
	defer ml.mu.Unlock()
	if ml.loader != nil && ml.key == key {
		return ml.loader, nil
	}
	ix, err := kmod.Open(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			log.Info("kmod: no modules for this kernel", "dir", dir)
			return nil, nil
		}
		return nil, err
	}
	ml.key, ml.loader = key, kmod.NewLoader(ix, log)
	return ml.loader, nil
}

// loadDeclared loads the declared modules and what the containers need:
// overlay for their root filesystems, the bridge networking's modules when
// a manifest asks for it. Unknown modules and modules whose file is missing
// are warnings (logged by the loader); only a module that fails to load is
// an error of the step.
func (ml *moduleLoader) loadDeclared(ctx context.Context, log *slog.Logger, declared []string) error {
	if hasManifests(config.DefaultContainersDir) {
		declared = append(declared, "overlay")
	}
	if hasBridged(config.DefaultContainersDir) {
		declared = append(declared, bridgeModules()...)
	}
	if len(declared) == 0 {
		return nil
	}
	l, err := ml.get(log)
	if l == nil {
		return err
	}
	r, _ := l.Load(ctx, declared...)
	return loadErrors(r, nil)
}

// coldplug loads the modules of the machine's devices: every device's
// modalias matched against the module directory's modules.alias. Then,
// on the same uevent subscription, it keeps loading the modules of the
// devices added later (hotplug), from whatever module directory is the
// running one, for the machine's life.
func (ml *moduleLoader) coldplug(ctx context.Context, log *slog.Logger) error {
	l, err := ml.get(log)
	if l == nil {
		return err
	}
	events, err := kmod.OpenKernelUevents()
	if err != nil {
		log.Warn("kmod: no uevents: coldplug walks sysfs after every round of loads, and later devices get no modules", "err", err)
		r, cerr := l.ColdplugEvents(ctx, "/sys", nil)
		return loadErrors(r, cerr)
	}
	r, cerr := l.ColdplugEvents(ctx, "/sys", events)
	safe.Go(log, "hotplug", func() {
		current := func() *kmod.Loader {
			l, err := ml.get(log)
			if err != nil {
				log.Warn("kmod: hotplug", "err", err)
			}
			return l
		}
		if err := kmod.Follow(context.WithoutCancel(ctx), events, "/sys", current, log); err != nil {
			log.Warn("kmod: hotplug stopped", "err", err)
		}
	})
	return loadErrors(r, cerr)
}

// loadErrors is the error of a step that loaded modules: the failed ones. A
// module listed in the index whose file is absent is a missing module: a
// warning (the loader logged it), not a failed boot. other (coldplug's own
// error, which joins its failed modules) counts only when no module failed:
// sysfs itself could not be read.
func loadErrors(results []kmod.Result, other error) error {
	var errs []error
	for _, res := range results {
		if res.Status == kmod.Failed && !errors.Is(res.Err, fs.ErrNotExist) {
			errs = append(errs, res.Err)
		}
	}
	if other != nil && len(errs) == 0 {
		errs = append(errs, other)
	}
	return errors.Join(errs...)
}

// bridgeModules are the kernel modules of bridge networking: veth pairs
// on a bridge, and the nftables expressions of pkg/net/nat (NAT chains,
// masquerade, DNAT, conntrack status, "fib daddr type local"). The
// initramfs's default module set has them; the boot loads only what is
// declared or coldplugged, and no device asks for these.
func bridgeModules() []string {
	return []string{"veth", "bridge", "nf_tables", "nft_chain_nat", "nft_masq", "nft_nat", "nft_ct", "nft_fib_ipv4"}
}

// hasBridged reports whether a valid manifest in dir asks for bridge
// networking (network_mode bridge, or no network_mode: the default).
func hasBridged(dir string) bool {
	cs, _ := manifest.LoadDir(dir)
	for _, c := range cs {
		if c.NetworkMode == "" || c.NetworkMode == "bridge" {
			return true
		}
	}
	return false
}

// hasManifests reports whether dir holds at least one container manifest.
func hasManifests(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if manifest.IsManifestName(e.Name()) {
			return true
		}
	}
	return false
}
