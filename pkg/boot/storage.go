package boot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/blockdev"
	"github.com/photon-init/photon-init/pkg/boot/kmod"
	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/mounts"
)

// Sysroot is where the real root (photon.root=, init.yaml root:) is
// mounted before photon-init switches to it.
const Sysroot = "/sysroot"

// mountStorage is the "mounts" step, before the network and the containers:
// when there is storage to mount, it waits for the devices step (the disks'
// drivers), switches to a real root when one is named, then mounts
// init.yaml's mounts: in order.
// A missing disk is reported after its timeout and an unknown filesystem
// fails its own entry only; the boot goes on, unless the entry is marked
// required: then the machine stops in the emergency state.
func (m *Machine) mountStorage(ctx context.Context) error {
	mounter := &mounts.Mounter{
		Log:            m.log,
		Devices:        blockdev.NewScanner("/sys", "/dev"),
		LoadFilesystem: m.loadFilesystem,
		Run:            m.runTool,
	}
	root, hasRoot := m.rootEntry()
	m.mu.Lock()
	cfg := m.config
	m.mu.Unlock()
	if !hasRoot && (cfg == nil || len(cfg.Mounts) == 0) {
		return nil
	}
	if err := m.waitBackground(ctx); err != nil {
		return fmt.Errorf("wait for the devices: %w", err)
	}
	var errs []error
	if hasRoot {
		end := m.timeline.Begin("storage", "switch-root")
		err := m.switchRoot(ctx, mounter, root)
		end(err)
		if err != nil {
			errs = append(errs, err)
		}
	}
	m.mu.Lock()
	cfg = m.config // the new root's, after a switch
	m.mu.Unlock()
	if cfg == nil || len(cfg.Mounts) == 0 {
		return errors.Join(errs...)
	}
	entries := make([]mounts.Entry, len(cfg.Mounts))
	for i, e := range cfg.Mounts {
		entries[i] = e.Entry()
	}
	done, err := mounter.MountAll(ctx, entries)
	for _, d := range done {
		m.log.Info("mounts: " + d.String())
	}
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); errors.Is(err, mounts.ErrRequiredFailed) {
		return fatal(err)
	}
	return errors.Join(errs...)
}

// rootEntry is the real root to switch to: photon.root= over init.yaml's
// root: (whose type, options and timeout still apply).
func (m *Machine) rootEntry() (mounts.Entry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var root config.Root
	if m.config != nil && m.config.Root != nil {
		root = *m.config.Root
	}
	if m.cmdline.Root != "" {
		root.Source = m.cmdline.Root
	}
	if root.Source == "" {
		return mounts.Entry{}, false
	}
	return root.Entry(Sysroot), true
}

// switchRoot mounts the real root and makes it the root of PID 1 (package
// mounts, SwitchRoot): photon-init goes on in the same process, its boot
// timeline and console intact, and from here on reads its configuration,
// manifests and image store from the new root. When the root cannot be
// mounted, the boot goes on from the initramfs.
func (m *Machine) switchRoot(ctx context.Context, mounter *mounts.Mounter, root mounts.Entry) error {
	if m.opts.Sandbox {
		return fmt.Errorf("switch root to %s: not in sandbox mode", root.Source)
	}
	if initramfs, err := mounts.IsInitramfsRoot(); err != nil || !initramfs {
		return fmt.Errorf("switch root to %s: / is not an initramfs (%v); staying on it", root.Source, err)
	}
	mnt, err := mounter.Mount(ctx, root)
	if err != nil {
		return fmt.Errorf("root %s: %w; the boot goes on from the initramfs", root.Source, err)
	}
	m.log.Info("switch-root: root " + mnt.String())
	if _, err := os.Stat(Sysroot + config.DefaultPath); err != nil {
		m.log.Warn("switch-root: the new root has no " + config.DefaultPath + "; the initramfs's configuration stays in force")
	}
	res, err := mounts.SwitchRoot(Sysroot)
	if err != nil {
		return err
	}
	for _, d := range res.Detached {
		m.log.Warn("switch-root: detached " + d)
	}
	m.log.Info(fmt.Sprintf("switch-root: running from %s; moved %s; freed %.1f MiB of initramfs (%d entries)",
		root.Source, strings.Join(res.Moved, " "), float64(res.Freed)/(1<<20), res.Removed))
	return m.reloadConfig(ctx)
}

// reloadConfig reads the new root's init.yaml after a switch_root: it
// replaces the initramfs's for everything from here on (mounts, sysctl,
// network, containers). The host name is set again if it changed, and
// modules it declares anew are loaded (from the new root's /lib/modules).
func (m *Machine) reloadConfig(ctx context.Context) error {
	if _, err := os.Stat(m.opts.ConfigPath); err != nil {
		return nil
	}
	before := m.Settings()
	if err := m.loadConfig(ctx); err != nil {
		return err
	}
	after := m.Settings()
	m.mu.Lock()
	hasRoot := m.config != nil && m.config.Root != nil
	m.mu.Unlock()
	if hasRoot {
		m.log.Warn("switch-root: root: in the new root's " + m.opts.ConfigPath + " is ignored (photon-init switched already)")
	}
	var errs []error
	if after.Hostname != before.Hostname && !m.opts.Sandbox {
		errs = append(errs, m.setHostname(ctx))
	}
	var added []string
	for _, mod := range after.Modules {
		if !slices.Contains(before.Modules, mod) {
			added = append(added, mod)
		}
	}
	if len(added) > 0 && m.opts.LoadModules != nil && !m.opts.Sandbox {
		errs = append(errs, m.opts.LoadModules(ctx, m.log, added))
	}
	return errors.Join(errs...)
}

// loadFilesystem loads the module of a filesystem type (its "fs-TYPE"
// alias, with dependencies and softdeps) from the running kernel's module
// directory, without a second coldplug. Nothing is loaded when module
// loading is off (no Options.LoadModules, or sandbox mode).
func (m *Machine) loadFilesystem(ctx context.Context, fstype string) error {
	if m.opts.LoadModules == nil || m.opts.Sandbox {
		return nil
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	ix, err := kmod.Open("/lib/modules/" + unix.ByteSliceToString(uts.Release[:]))
	if err != nil {
		return err
	}
	_, err = kmod.NewLoader(ix, m.log).Load(ctx, "fs-"+fstype)
	return err
}

// runTool runs a helper (mkfs) to its end through PID 1's reaper, killing
// it if ctx ends first.
func (m *Machine) runTool(ctx context.Context, cmd *exec.Cmd) error {
	if m.opts.Reaper == nil {
		return fmt.Errorf("%s: no reaper to start it", cmd.Path)
	}
	h, err := m.opts.Reaper.Start(cmd)
	if err != nil {
		return err
	}
	exit, err := h.WaitContext(ctx)
	if err != nil {
		_ = h.Signal(unix.SIGKILL)
		<-h.Done()
		return err
	}
	if !exit.Success() {
		return errors.New(exit.String())
	}
	return nil
}
