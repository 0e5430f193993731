package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		wantErr string // substring; "" means success
		check   func(*testing.T, *Config)
	}{
		{name: "empty", text: ""},
		{name: "comments only", text: "# nothing\n"},
		{
			name: "full",
			text: `hostname: web-1.example
modules: [virtio_net, fs-overlay]
sysctl:
  net.ipv4.ip_forward: 1
  kernel/panic: "10"
rlimits:
  nofile: 65536:1048576
  core: unlimited
console:
  loglevel: debug
  quiet: false
registries:
  insecure: ["10.0.2.100:5000", "registry.local", "[::1]:5000"]
  auth_file: /etc/photon/auth.json
containers:
  dir: /etc/photon/containers
  logs:
    max_size: 10m
    max_files: 3
    console_lines_per_second: 50
    console_burst: 200
`,
			check: func(t *testing.T, c *Config) {
				if c.Hostname != "web-1.example" || len(c.Modules) != 2 || c.Sysctl["net.ipv4.ip_forward"] != "1" ||
					c.Sysctl["kernel/panic"] != "10" || c.Console.LogLevel != "debug" || c.Rlimits["nofile"] != "65536:1048576" ||
					len(c.Registries.Insecure) != 3 || c.Registries.AuthFile != DefaultAuthFile || c.Containers.Dir != DefaultContainersDir {
					t.Errorf("decoded %+v", c)
				}
				want := ContainerLogs{MaxSize: 10 << 20, MaxFiles: 3, ConsoleLinesPerSecond: 50, ConsoleBurst: 200}
				if c.Containers.Logs != want {
					t.Errorf("containers.logs = %+v, want %+v", c.Containers.Logs, want)
				}
			},
		},
		{
			name: "container log sizes",
			text: "containers:\n  logs: {max_size: 4096}\n",
			check: func(t *testing.T, c *Config) {
				if c.Containers.Logs != (ContainerLogs{MaxSize: 4096}) {
					t.Errorf("containers.logs = %+v", c.Containers.Logs)
				}
			},
		},
		{
			name: "container log size units",
			text: "containers:\n  logs:\n    max_size: 1GiB\n",
			check: func(t *testing.T, c *Config) {
				if c.Containers.Logs.MaxSize != 1<<30 {
					t.Errorf("max_size = %d", c.Containers.Logs.MaxSize)
				}
			},
		},
		{name: "log size not a size", text: "containers:\n  logs:\n    max_size: ten megs\n", wantErr: `init.yaml:3: "ten megs" is not a size`},
		{name: "log size a list", text: "containers:\n  logs:\n    max_size: [1]\n", wantErr: "init.yaml:3: expected a size, found a list"},
		{name: "log size too small", text: "containers:\n  logs:\n    max_size: 1k\n", wantErr: "init.yaml:3: containers.logs.max_size: 1024 bytes is not a log file size (4k to 1t)"},
		{name: "log size zero", text: "containers:\n  logs:\n    max_size: 0\n", wantErr: "init.yaml:3: containers.logs.max_size: 0 bytes"},
		{name: "log size negative", text: "containers:\n  logs:\n    max_size: -5m\n", wantErr: `init.yaml:3: "-5m" is not a size`},
		{name: "log files zero", text: "containers:\n  logs:\n    max_size: 1m\n    max_files: 0\n", wantErr: "init.yaml:4: containers.logs.max_files: 0 is not a number of files (1 to 1000)"},
		{name: "log files too many", text: "containers:\n  logs:\n    max_files: 1001\n", wantErr: "init.yaml:3: containers.logs.max_files: 1001"},
		{name: "log files not a number", text: "containers:\n  logs:\n    max_files: three\n", wantErr: "init.yaml:3: cannot unmarshal !!str `three` into int"},
		{name: "console rate zero", text: "containers:\n  logs:\n    console_lines_per_second: 0\n", wantErr: "init.yaml:3: containers.logs.console_lines_per_second: 0 is not a number of lines a second (1 to 100000)"},
		{name: "console burst negative", text: "containers:\n  logs:\n\n    console_burst: -1\n", wantErr: "init.yaml:4: containers.logs.console_burst: -1 is not a number of lines (1 to 100000)"},
		{name: "unknown log field", text: "containers:\n  logs:\n    max_age: 3d\n", wantErr: "init.yaml:3: field max_age not found in type config.ContainerLogs"},
		{name: "log errors in line order", text: "containers:\n  logs:\n    max_files: 0\n    max_size: 1\n", wantErr: "init.yaml:3: containers.logs.max_files: 0 is not a number of files (1 to 1000)\n/etc/photon/init.yaml:4: containers.logs.max_size: 1 bytes"},
		{name: "unknown field", text: "hostname: a\nmodules: []\nhostnme: b\n", wantErr: "init.yaml:3: field hostnme not found"},
		{name: "wrong type", text: "modules: virtio_net\n", wantErr: "init.yaml:1: cannot unmarshal !!str `virtio_net` into []string"},
		{name: "syntax", text: "hostname: a\n  bad: [\n", wantErr: "init.yaml:2:"},
		{name: "bad hostname", text: "\nhostname: -bad-\n", wantErr: `init.yaml:2: hostname: "-bad-" is not a valid host name`},
		{name: "bad module", text: "modules:\n  - ok\n  - \"no way\"\n", wantErr: `init.yaml:3: modules: "no way" is not a module name`},
		{name: "bad sysctl key", text: "sysctl:\n  \"../../etc\": 1\n", wantErr: "init.yaml:2: sysctl:"},
		{name: "sysctl list value", text: "sysctl:\n  a.b:\n    - 1\n", wantErr: "init.yaml:3: expected a scalar value, found a list"},
		{name: "bad rlimit name", text: "rlimits:\n  files: 10\n", wantErr: `init.yaml:2: rlimits: unknown rlimit "files"`},
		{name: "bad rlimit order", text: "rlimits:\n  nofile: 10:5\n", wantErr: "soft limit 10 above hard limit 5"},
		{name: "bad loglevel", text: "console:\n  loglevel: loud\n", wantErr: `init.yaml:2: console.loglevel: "loud" is not one of`},
		{name: "unknown nested", text: "console:\n  colour: red\n", wantErr: "init.yaml:2: field colour not found in type config.Console"},
		{name: "bad insecure registry", text: "registries:\n  insecure:\n    - 10.0.2.100:5000\n    - \"http://x\"\n", wantErr: `init.yaml:4: registries.insecure: "http://x" is not a registry host`},
		{name: "bad registry port", text: "registries:\n  insecure: [\"host:99999\"]\n", wantErr: `init.yaml:2: registries.insecure: "host:99999"`},
		{name: "relative auth file", text: "registries:\n  auth_file: auth.json\n", wantErr: `init.yaml:2: registries.auth_file: "auth.json" is not an absolute path`},
		{name: "relative debug shell", text: "debug:\n  shell: bin/sh\n", wantErr: `init.yaml:2: debug.shell: "bin/sh" is not an absolute path`},
		{name: "relative containers dir", text: "containers:\n  dir: c\n", wantErr: `init.yaml:2: containers.dir: "c" is not an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("/etc/photon/init.yaml", []byte(tt.text))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.check != nil {
					tt.check(t, cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if cfg == nil || cfg.Hostname != "" || len(cfg.Modules) != 0 {
				t.Errorf("a failed parse returned a non-empty config: %+v", cfg)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	cfg, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) || cfg == nil {
		t.Fatalf("Load(missing) = %v, %v; want empty config and ErrNotExist", cfg, err)
	}
}

func TestParseRlimit(t *testing.T) {
	tests := []struct {
		name, value string
		soft, hard  uint64
		ok          bool
	}{
		{"nofile", "1024", 1024, 1024, true},
		{"nofile", "1024:4096", 1024, 4096, true},
		{"core", "unlimited", ^uint64(0), ^uint64(0), true},
		{"nofile", "x", 0, 0, false},
		{"bogus", "1", 0, 0, false},
	}
	for _, tt := range tests {
		r, err := ParseRlimit(tt.name, tt.value)
		if (err == nil) != tt.ok || (tt.ok && (r.Soft != tt.soft || r.Hard != tt.hard)) {
			t.Errorf("ParseRlimit(%q, %q) = %+v, %v", tt.name, tt.value, r, err)
		}
	}
}

func TestSysctlPath(t *testing.T) {
	for in, want := range map[string]string{
		"net.ipv4.ip_forward": "/proc/sys/net/ipv4/ip_forward",
		"kernel/panic":        "/proc/sys/kernel/panic",
	} {
		if got := SysctlPath(in); got != want {
			t.Errorf("SysctlPath(%q) = %q, want %q", in, got, want)
		}
	}
}
