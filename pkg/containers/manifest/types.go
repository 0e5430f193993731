package manifest

import "time"

// Container is one decoded, validated container manifest: the file
// /etc/photon/containers/NAME.yaml. Field names follow Docker Compose's
// service keys where they overlap.
//
// A nil slice or pointer means "not set in the manifest" (the image's own
// config, or the documented default, applies); an empty non-nil slice means
// "set to nothing" (for example `entrypoint: []` resets the image's
// entrypoint, as in Compose).
type Container struct {
	// Name is the container's name: the `name` field, or else the file
	// name without its extension.
	Name string `yaml:"name"`
	// File is the path the manifest was read from (not a YAML field).
	File string `yaml:"-"`

	// Image is the image reference (see pkg/containers/image.ParseReference).
	Image string `yaml:"image"`

	Entrypoint []string `yaml:"entrypoint"` // string (shell form split as Compose does) or list
	Command    []string `yaml:"command"`    // string or list
	// Environment is KEY=VALUE entries in file order, one per key;
	// entries from env_file come first, `environment` overrides them.
	// A KEY without a value sets nothing.
	Environment []string `yaml:"environment"` // map or list
	EnvFile     []string `yaml:"env_file"`    // string or list, relative to the manifest's directory
	WorkingDir  string   `yaml:"working_dir"`
	User        string   `yaml:"user"` // uid, uid:gid, name or name:group (resolved in the image)
	Hostname    string   `yaml:"hostname"`
	// NetworkMode is "host", "none", "bridge" or "container:NAME".
	NetworkMode string `yaml:"network_mode"`
	Ports       []Port `yaml:"ports"`

	Volumes []Volume `yaml:"volumes"` // short "SRC:DST[:ro]" or long syntax
	Tmpfs   []string `yaml:"tmpfs"`   // "PATH[:size=...,mode=...]", normalised (size in bytes); see ParseTmpfs
	Devices []Device `yaml:"devices"` // "HOST[:CTR[:PERMS]]"

	ReadOnly   bool     `yaml:"read_only"`
	Privileged bool     `yaml:"privileged"`
	CapAdd     []string `yaml:"cap_add"`  // normalised to "CAP_X" form, or "ALL"
	CapDrop    []string `yaml:"cap_drop"` // normalised to "CAP_X" form, or "ALL"

	MemLimit  int64             `yaml:"mem_limit"`  // bytes; "512m" style accepted; 0 = none
	Cpus      float64           `yaml:"cpus"`       // 0 = no limit
	PidsLimit int64             `yaml:"pids_limit"` // 0 or -1 = no limit
	Ulimits   map[string]Ulimit `yaml:"ulimits"`    // nofile: 1024 or {soft, hard}
	Sysctls   map[string]string `yaml:"sysctls"`    // map or list of KEY=VALUE
	Labels    map[string]string `yaml:"labels"`     // map or list

	StopSignal      string        `yaml:"stop_signal"`       // "SIGTERM", "TERM" or a number; "" = image's, else SIGTERM
	StopGracePeriod time.Duration `yaml:"stop_grace_period"` // Compose durations ("10s", "1m30s"); 0 = default 10s

	Restart     string                `yaml:"restart"` // "no", "always", "on-failure[:N]", "unless-stopped"
	DependsOn   map[string]Dependency `yaml:"depends_on"`
	Healthcheck *Healthcheck          `yaml:"healthcheck"`

	// Watchdog, when set, is the sd_notify watchdog interval: the
	// container gets WATCHDOG_USEC and must send WATCHDOG=1 at least this
	// often, or it is restarted (our own key; 0 = no watchdog).
	Watchdog time.Duration `yaml:"watchdog"`

	// Logging holds per-container log settings (file rotation).
	Logging *Logging `yaml:"logging"`
}

// Port is one published port in Compose's short syntax
// "[HOST_IP:]HOST:CONTAINER[/tcp|/udp]" (or "CONTAINER[/proto]").
type Port struct {
	HostIP        string
	HostPort      uint16 // 0 = not published on the host
	ContainerPort uint16
	Protocol      string // "tcp" or "udp"
}

// VolumeType says what a Volume mounts.
type VolumeType string

// Volume types.
const (
	VolumeBind   VolumeType = "bind"   // a host path
	VolumeNamed  VolumeType = "volume" // kept under /var/lib/photon/volumes/NAME
	VolumeTmpfs  VolumeType = "tmpfs"  // a fresh tmpfs
	VolumeNoName VolumeType = ""       // an anonymous volume: "/data" alone
)

// Volume is one entry of `volumes`.
type Volume struct {
	Type     VolumeType
	Source   string // host path (bind), volume name (volume), "" otherwise
	Target   string // absolute path in the container
	ReadOnly bool
	// TmpfsSize is the tmpfs size limit in bytes (0 = kernel default).
	TmpfsSize int64
	// TmpfsMode is the tmpfs root's mode (0 = 01777).
	TmpfsMode uint32
}

// Device is one entry of `devices`: "HOST[:CONTAINER[:PERMS]]".
type Device struct {
	HostPath      string
	ContainerPath string
	Permissions   string // subset of "rwm"; "" = "rwm"
}

// Ulimit is a soft and hard resource limit; -1 means unlimited.
type Ulimit struct {
	Soft int64
	Hard int64
}

// Dependency is one `depends_on` entry.
type Dependency struct {
	// Condition is "service_started" (the default), "service_healthy",
	// "service_completed_successfully" or "service_ready".
	Condition string
	// Required (default true): when false, a missing or failed
	// dependency does not hold the container back.
	Required bool
	// Restart: restart this container when the dependency restarts.
	Restart bool
}

// Healthcheck is Compose's healthcheck block.
type Healthcheck struct {
	// Test is ["CMD", args...], ["CMD-SHELL", "command"] or ["NONE"].
	Test          []string
	Interval      time.Duration
	Timeout       time.Duration
	StartPeriod   time.Duration
	StartInterval time.Duration
	Retries       int
	Disable       bool
}

// Logging holds per-container log settings.
type Logging struct {
	MaxSize  int64 // bytes per file before rotation; 0 = init.yaml's default
	MaxFiles int   // rotated files kept; 0 = init.yaml's default
}
