package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nice"
	"github.com/photon-init/photon-init/pkg/boot/power"
	"github.com/photon-init/photon-init/pkg/config"
)

// DefaultHostname is the host name when neither init.yaml nor the command
// line gives one.
const DefaultHostname = "photon"

// readCmdline parses /proc/cmdline, applies the log level and opens every
// console= device.
func (m *Machine) readCmdline(ctx context.Context) error {
	data, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read kernel command line: %w", err)
	}
	cl := ParseCmdline(string(data))
	m.mu.Lock()
	m.cmdline = cl
	m.settings = Merge(&config.Config{}, cl)
	m.mu.Unlock()
	m.applyLogLevel()
	if len(cl.Consoles) > 0 && !m.opts.Sandbox {
		for _, err := range m.console.Open("/dev", cl.Consoles) {
			m.log.Warn("console", "err", err)
		}
	}
	for _, w := range cl.Warnings {
		m.log.Warn("kernel command line: " + w)
	}
	m.log.Debug("kernel command line", "consoles", strings.Join(m.console.Devices(), ","), "debug", cl.Debug)
	return nil
}

// loadConfig reads init.yaml and merges the command line over it. A broken
// file is reported (file:line) and the boot goes on with the command line
// alone.
func (m *Machine) loadConfig(ctx context.Context) error {
	cfg, err := config.Load(m.opts.ConfigPath)
	if cfg == nil {
		cfg = &config.Config{}
	}
	m.mu.Lock()
	m.config = cfg
	m.settings = Merge(cfg, m.cmdline)
	m.mu.Unlock()
	m.applyLogLevel()
	switch {
	case errors.Is(err, os.ErrNotExist):
		m.log.Debug("config: none", "path", m.opts.ConfigPath)
		return nil
	case err != nil:
		return fmt.Errorf("%w\nthe boot goes on without %s", err, m.opts.ConfigPath)
	}
	return nil
}

// applyLogLevel sets the console's level from the settings.
func (m *Machine) applyLogLevel() {
	s := m.Settings()
	lv := slog.LevelInfo
	switch s.LogLevel {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	}
	if s.Quiet {
		lv = slog.LevelError
	}
	m.level.Set(lv)
}

// Settings returns the effective settings so far.
func (m *Machine) Settings() Settings {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.settings
}

// loadModules loads the declared modules and coldplugs the devices.
func (m *Machine) loadModules(ctx context.Context) error {
	if m.opts.LoadModules == nil {
		return nil
	}
	return m.opts.LoadModules(ctx, m.log, m.Settings().Modules)
}

// setHostname sets the host name from the settings.
func (m *Machine) setHostname(ctx context.Context) error {
	name := m.Settings().Hostname
	if name == "" {
		name = DefaultHostname
	}
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("set hostname %q: %w", name, err)
	}
	m.log.Debug("hostname", "name", name)
	return nil
}

// defaultNofile is RLIMIT_NOFILE for PID 1 and its children when not
// configured: the kernel gives init 1024, too few for a container host.
const defaultNofile = 1 << 20

// setRlimits raises the open-files limit and applies configured limits.
func (m *Machine) setRlimits(ctx context.Context) error {
	var errs []error
	n := uint64(defaultNofile)
	if data, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if max, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err == nil && max < n {
			n = max
		}
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}); err != nil {
		// Without CAP_SYS_RESOURCE (sandbox mode) the hard limit cannot
		// rise: take the soft limit up to it instead.
		var cur unix.Rlimit
		if gerr := unix.Getrlimit(unix.RLIMIT_NOFILE, &cur); gerr == nil {
			cur.Cur = cur.Max
			if serr := unix.Setrlimit(unix.RLIMIT_NOFILE, &cur); serr == nil {
				m.log.Debug("rlimit nofile: hard limit fixed", "limit", cur.Max, "err", err)
				err = nil
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rlimit nofile %d: %w", n, err))
		}
	}
	limits := m.Settings().Rlimits
	for _, name := range sortedKeys(limits) {
		rl, err := config.ParseRlimit(name, string(limits[name]))
		if err == nil {
			err = unix.Setrlimit(rl.Resource, &unix.Rlimit{Cur: rl.Soft, Max: rl.Hard})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rlimit %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// applySysctl writes the configured sysctls; every key is tried. A key
// that does not exist yet (a module's, or a network device's that coldplug
// has still to create) is applied again at the end of the devices step.
func (m *Machine) applySysctl(ctx context.Context) error {
	missing, err := m.writeSysctls(sortedKeys(m.Settings().Sysctl), true)
	m.mu.Lock()
	m.sysctlMissing = missing
	m.mu.Unlock()
	return err
}

// writeSysctls writes the given configured keys. With deferMissing, keys
// without a file are returned instead of reported.
func (m *Machine) writeSysctls(keys []string, deferMissing bool) (missing []string, err error) {
	var errs []error
	sysctl := m.Settings().Sysctl
	for _, key := range keys {
		path := config.SysctlPath(key)
		err := os.WriteFile(path, []byte(string(sysctl[key])+"\n"), 0)
		switch {
		case err == nil:
		case deferMissing && errors.Is(err, os.ErrNotExist):
			missing = append(missing, key)
		default:
			errs = append(errs, fmt.Errorf("sysctl %s: %w", key, err))
		}
	}
	return missing, errors.Join(errs...)
}

// coldplug is the devices step, in the background at a low CPU priority:
// it loads the modules of the machine's devices (the containers start
// meanwhile; network links are configured as they appear), then watches the
// power button and applies the sysctl keys that only exist now.
func (m *Machine) coldplug(ctx context.Context) error {
	var errs []error
	if m.opts.Coldplug != nil {
		errs = append(errs, nice.Run(coldplugNice, func() error { return m.opts.Coldplug(ctx, m.log) }))
	}
	end := m.timeline.Begin("devices", "power-button")
	err := m.watchPowerButton(ctx)
	end(err)
	errs = append(errs, err)
	m.mu.Lock()
	missing := m.sysctlMissing
	m.sysctlMissing = nil
	m.mu.Unlock()
	if len(missing) > 0 {
		_, err := m.writeSysctls(missing, false)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// coldplugNice is the devices step's nice value: module loading is CPU work
// (signature checks, relocations) that should not slow the containers'
// start on a machine with one CPU.
const coldplugNice = 10

// checkEntropy reports whether the kernel's random number generator is
// ready without ever waiting for it: nothing on the boot path reads blocking
// randomness. RDRAND (trusted by Debian's kernel) and virtio-rng, loaded by
// coldplug, feed the kernel; the log says what is there.
func (m *Machine) checkEntropy(ctx context.Context) error {
	var b [1]byte
	_, err := unix.Getrandom(b[:], unix.GRND_NONBLOCK)
	ready := err == nil
	hwrng := strings.TrimSpace(readFile("/sys/class/misc/hw_random/rng_current"))
	cpuinfo := readFile("/proc/cpuinfo")
	rdrand := strings.Contains(cpuinfo, " rdrand") || strings.Contains(cpuinfo, " rdseed")
	if ready {
		m.log.Debug("entropy: kernel random number generator ready", "hwrng", hwrng, "rdrand", rdrand)
		return nil
	}
	m.log.Info("entropy: kernel random number generator not ready yet; nothing waits for it", "hwrng", hwrng, "rdrand", rdrand)
	return nil
}

// watchPowerButton starts reading the ACPI power button(s).
func (m *Machine) watchPowerButton(ctx context.Context) error {
	devs, err := power.WatchPowerButtons(context.Background(), m.log, "/sys/class/input", "/dev/input", m.requests)
	if err != nil {
		return err
	}
	if len(devs) == 0 {
		m.log.Debug("no power button (needs the evdev and button modules)")
		return nil
	}
	m.log.Debug("power button", "devices", strings.Join(devs, ","))
	return nil
}

func readFile(path string) string {
	data, _ := os.ReadFile(path)
	return string(bytes.TrimRight(data, "\x00"))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// startWorkload starts the machine's workload (the containers) and returns;
// the workload runs on in the background.
func (m *Machine) startWorkload(ctx context.Context) error {
	if m.opts.Workload == nil {
		return nil
	}
	m.mu.Lock()
	cfg := m.config
	m.mu.Unlock()
	if cfg == nil {
		cfg = &config.Config{}
	}
	return m.opts.Workload.Start(ctx, WorkloadEnv{
		Log:     m.log,
		Console: m.console,
		Reaper:  m.opts.Reaper,
		Config:  cfg,
		Sandbox: m.opts.Sandbox,
		Machine: m,
		Network: m.Network(),
	})
}
