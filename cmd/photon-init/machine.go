package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/boot"
	"github.com/photon-init/photon-init/pkg/boot/kmod"
	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/containers/engine"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// machineOptions wires the packages that the boot sequence drives.
func machineOptions(sandbox bool, configPath string) boot.Options {
	return boot.Options{
		Version:     version,
		PID1Start:   pid1Start,
		Sandbox:     sandbox,
		ConfigPath:  configPath,
		LoadModules: loadModules,
		Workload:    containerWorkload{engine.New(engine.PathsUnder("/"))},
	}
}

// loadModules loads the declared modules, then coldplugs: every device's
// modalias matched against the initramfs's modules.alias. Unknown modules
// and modules whose file is missing are warnings (logged by the loader);
// only a module that fails to load is an error of the step.
func loadModules(ctx context.Context, log *slog.Logger, declared []string) error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	dir := "/lib/modules/" + unix.ByteSliceToString(uts.Release[:])
	ix, err := kmod.Open(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			log.Info("kmod: no modules for this kernel", "dir", dir)
			return nil
		}
		return err
	}
	if hasManifests(config.DefaultContainersDir) {
		// Containers' root filesystems are overlays.
		declared = append(declared, "overlay")
	}
	if hasBridged(config.DefaultContainersDir) {
		declared = append(declared, bridgeModules()...)
	}
	l := kmod.NewLoader(ix, log)
	var results []kmod.Result
	if len(declared) > 0 {
		r, _ := l.Load(ctx, declared...)
		results = append(results, r...)
	}
	r, coldErr := l.Coldplug(ctx, "/sys")
	results = append(results, r...)
	var errs []error
	for _, res := range results {
		// A module listed in the index whose file is absent is a missing
		// module: a warning (the loader logged it), not a failed boot.
		if res.Status == kmod.Failed && !errors.Is(res.Err, fs.ErrNotExist) {
			errs = append(errs, res.Err)
		}
	}
	// Coldplug's error joins its failed modules, reported above, unless
	// sysfs itself could not be read.
	if coldErr != nil && len(errs) == 0 {
		errs = append(errs, coldErr)
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
