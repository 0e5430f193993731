package container

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// DefaultStopGrace is how long Stop waits after the stop signal before it
// kills, when the manifest sets no stop_grace_period (Docker's default).
const DefaultStopGrace = 10 * time.Second

// Network modes of a manifest.
const (
	NetworkHost = "host"
	NetworkNone = "none"
)

// The sd_notify socket as the container sees it: its directory on the
// host (Options.NotifyDir/NAME) is bind-mounted read-only on
// NotifySocketDir, and NOTIFY_SOCKET names NotifySocketPath. The directory
// is photon-init's own, so it does not clash with an image's
// /run/systemd/notify or anything else an image keeps under /run.
const (
	NotifySocketDir  = "/run/photon/notify"
	NotifySocketPath = NotifySocketDir + "/" + notifySocketName
	notifySocketName = "notify.sock"
)

// Annotations the runtime writes into the spec.
const (
	AnnotationName        = "org.photon-init.container.name"
	AnnotationImage       = "org.photon-init.image.ref"
	AnnotationImageDigest = "org.photon-init.image.digest"
)

// layout is where one container's files live.
type layout struct {
	dir          string // DataDir/containers/NAME
	rootfs       string // the root filesystem (overlay mount point, or the flattened copy)
	upper, work  string // the overlay's writable layer and work dir
	hostname     string // generated /etc/hostname
	hosts        string // generated /etc/hosts
	resolvConf   string // generated /etc/resolv.conf
	config       string // the OCI config.json, for inspection
	meta         string // what the writable layer was made from
	anonVolumes  string // anonymous volumes of this container
	namedVolumes string // named volumes of the machine
	notifyDir    string // the notify socket's directory, mounted on NotifySocketDir
	notifySock   string // the notify socket
}

func newLayout(dataDir, volumesDir, notifyDir, name string) *layout {
	dir := filepath.Join(dataDir, "containers", name)
	nd := filepath.Join(notifyDir, name)
	return &layout{
		notifyDir:    nd,
		notifySock:   filepath.Join(nd, notifySocketName),
		dir:          dir,
		rootfs:       filepath.Join(dir, "rootfs"),
		upper:        filepath.Join(dir, "upper"),
		work:         filepath.Join(dir, "work"),
		hostname:     filepath.Join(dir, "hostname"),
		hosts:        filepath.Join(dir, "hosts"),
		resolvConf:   filepath.Join(dir, "resolv.conf"),
		config:       filepath.Join(dir, "config.json"),
		meta:         filepath.Join(dir, "layer.json"),
		anonVolumes:  filepath.Join(dir, "volumes"),
		namedVolumes: volumesDir,
	}
}

// plan is everything Create derives from a manifest and an image.
type plan struct {
	spec       *specs.Spec
	volumes    []volume // host directories to prepare
	hostname   string
	stopSignal string // as written (manifest, else image), "" = SIGTERM
	stopGrace  time.Duration
	// notify: the container gets the notify socket (no user mount took
	// NotifySocketDir).
	notify   bool
	watchdog time.Duration
}

// hostnameOf is the manifest's hostname, else the container's name.
func hostnameOf(m *manifest.Container) string {
	if m.Hostname != "" {
		return m.Hostname
	}
	return m.Name
}

// ownNetns says whether the network mode gives the container its own
// network namespace: bridge (also "", the default) and none do; host
// shares the machine's and container:NAME another container's. Which
// namespace is joined is network.go's business (attachNetwork).
func ownNetns(mode string) (bool, error) {
	switch {
	case mode == "" || mode == NetworkBridge || mode == NetworkNone:
		return true, nil
	case mode == NetworkHost:
		return false, nil
	case strings.HasPrefix(mode, "container:") && manifest.ValidName(strings.TrimPrefix(mode, "container:")):
		return false, nil
	default:
		return false, fmt.Errorf("network_mode %q is not a network mode (bridge, host, none, container:NAME)", mode)
	}
}

// buildSpec builds the OCI runtime spec of a container: its process from
// the manifest and the image config by Docker's rules, namespaces,
// capabilities, masked and read-only paths, mounts, cgroup limits and
// seccomp. rootfs is read for the user's passwd and group entries;
// nothing is written.
func buildSpec(m *manifest.Container, img *image.Image, l *layout, cgroupParent string, profiles *seccompProfiles) (*plan, error) {
	if m == nil || img == nil {
		return nil, errors.New("no manifest or no image")
	}
	if !manifest.ValidName(m.Name) {
		return nil, fmt.Errorf("%q is not a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, at most %d characters)", m.Name, manifest.MaxNameLen)
	}
	cfg := &img.Config
	netns, err := ownNetns(m.NetworkMode)
	if err != nil {
		return nil, err
	}
	argv, err := args(m, cfg)
	if err != nil {
		return nil, err
	}
	userSpec := m.User
	if userSpec == "" {
		userSpec = cfg.User
	}
	u, err := execUser(l.rootfs, userSpec)
	if err != nil {
		return nil, err
	}
	cwd := m.WorkingDir
	if cwd == "" {
		cwd = cfg.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		return nil, fmt.Errorf("working_dir %q is not an absolute path", cwd)
	}
	cwd = path.Clean(cwd)
	hostname := hostnameOf(m)
	caps, err := capabilities(m)
	if err != nil {
		return nil, err
	}
	rl, err := processRlimits(m.Ulimits)
	if err != nil {
		return nil, err
	}
	if err := checkSysctls(m.Sysctls, netns); err != nil {
		return nil, err
	}
	user, vols, err := userMounts(m, cfg.Volumes, l)
	if err != nil {
		return nil, err
	}
	devs, perms, err := linuxDevices(m)
	if err != nil {
		return nil, err
	}
	if m.Watchdog < 0 {
		return nil, fmt.Errorf("watchdog %v is negative", m.Watchdog)
	}
	mounts := allMounts(defaultMounts(m.Privileged), generatedMounts(l), user)
	notify := slices.ContainsFunc(mounts, func(mt specs.Mount) bool {
		return mt.Destination == NotifySocketDir && mt.Source == l.notifyDir
	})

	namespaces := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.MountNamespace},
		{Type: specs.CgroupNamespace},
	}
	if netns {
		namespaces = append(namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}

	spec := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User:            processUser(u),
			Args:            argv,
			Env:             environment(m, cfg, hostname, u.Home, notifyEnv(notify, m.Watchdog)),
			Cwd:             cwd,
			Capabilities:    linuxCapabilities(caps, uint32(u.Uid)),
			Rlimits:         rl,
			NoNewPrivileges: !m.Privileged,
		},
		Root:     &specs.Root{Path: l.rootfs, Readonly: m.ReadOnly},
		Hostname: hostname,
		Mounts:   mounts,
		Annotations: map[string]string{
			AnnotationName:        m.Name,
			AnnotationImage:       img.Ref,
			AnnotationImageDigest: img.Digest,
		},
		Linux: &specs.Linux{
			Sysctl:      maps.Clone(m.Sysctls),
			Resources:   resources(m, devs, perms),
			CgroupsPath: path.Join("/", cgroupParent, m.Name),
			Namespaces:  namespaces,
			Devices:     devs,
		},
	}
	if !m.Privileged {
		spec.Linux.MaskedPaths = presentPaths(maskedPaths)
		spec.Linux.ReadonlyPaths = presentPaths(readonlyPaths)
	}
	if spec.Linux.Seccomp, err = profiles.profile(spec, m.Privileged); err != nil {
		return nil, err
	}

	stop := m.StopSignal
	if stop == "" {
		stop = cfg.StopSignal
	}
	if stop != "" {
		if _, err := manifest.ParseSignal(stop); err != nil {
			return nil, fmt.Errorf("stop signal: %w", err)
		}
	}
	grace := m.StopGracePeriod
	if grace <= 0 {
		grace = DefaultStopGrace
	}
	return &plan{spec: spec, volumes: vols, hostname: hostname, stopSignal: stop, stopGrace: grace,
		notify: notify, watchdog: m.Watchdog}, nil
}

// notifyEnv is what a container with the notify socket gets in its
// environment: NOTIFY_SOCKET, and with a watchdog WATCHDOG_USEC and
// WATCHDOG_PID=1 (its first process is PID 1 of its own PID namespace,
// which every container has; a process started by Exec inherits the
// variables and, not being PID 1, rightly finds that the watchdog is not
// its business, as sd_watchdog_enabled(3) checks).
func notifyEnv(notify bool, watchdog time.Duration) []string {
	if !notify {
		return nil
	}
	env := []string{"NOTIFY_SOCKET=" + NotifySocketPath}
	if watchdog > 0 {
		usec := max(watchdog.Microseconds(), 1)
		env = append(env, "WATCHDOG_USEC="+strconv.FormatInt(usec, 10), "WATCHDOG_PID=1")
	}
	return env
}
