// Package config reads photon-init's machine configuration,
// /etc/photon/init.yaml.
//
// Decoding is strict: an unknown field, a value of the wrong type or a value
// that fails validation is an error naming the file and the line, in the
// form "FILE:LINE: message", so that both people and editors can jump to it.
// The kernel command line (package boot) overrides what the file says.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/go-units"
	"gopkg.in/yaml.v3"
)

// DefaultPath is where the machine configuration lives.
const DefaultPath = "/etc/photon/init.yaml"

// Config is the machine configuration. The zero value is a valid, empty
// configuration.
type Config struct {
	// Hostname is the machine's host name (RFC 1123 label or FQDN).
	Hostname string `yaml:"hostname"`
	// Modules are kernel modules to load at boot in addition to those that
	// coldplug finds for the machine's devices.
	Modules []string `yaml:"modules"`
	// Sysctl maps a sysctl key (dotted or slashed, "net.ipv4.ip_forward")
	// to the value written into /proc/sys.
	Sysctl map[string]Scalar `yaml:"sysctl"`
	// Rlimits sets PID 1's resource limits, inherited by everything it
	// starts: a name ("nofile", "nproc", "core", "memlock", "stack") to a
	// soft and hard value ("1048576" or "4096:8192" or "unlimited").
	Rlimits map[string]Scalar `yaml:"rlimits"`
	// Console configures photon-init's own console output.
	Console Console `yaml:"console"`
	// Debug configures the debug shell on the console (photon.debug).
	Debug Debug `yaml:"debug"`
	// Registries configures image pulls from registries.
	Registries Registries `yaml:"registries"`
	// Containers holds machine-wide container settings.
	Containers Containers `yaml:"containers"`
	// Network configures the machine's links, DNS and DHCP.
	Network Network `yaml:"network"`
	// Mounts are filesystems mounted at boot, in order (docs/storage.md).
	Mounts []Mount `yaml:"mounts"`
	// Root is a real root filesystem to switch to from the initramfs;
	// nil stays on the initramfs (unless photon.root= is given).
	Root *Root `yaml:"root"`
}

// Debug configures the console's debug shell.
type Debug struct {
	// Shell is the program the debug shell runs (absolute path, started
	// with "-i"), for instance a shell from a debug tool set copied into
	// the initramfs; the default is /bin/sh when it exists, else the
	// shell built into photon-init.
	Shell string `yaml:"shell"`
}

// Registries configures pulls from container registries.
type Registries struct {
	// Insecure lists registries ("host" or "host:port") reached over
	// plain HTTP instead of HTTPS.
	Insecure []string `yaml:"insecure"`
	// AuthFile holds credentials in Docker's config.json format; the
	// default is DefaultAuthFile.
	AuthFile string `yaml:"auth_file"`
}

// DefaultAuthFile is where registry credentials are read from.
const DefaultAuthFile = "/etc/photon/auth.json"

// Containers holds machine-wide container settings.
type Containers struct {
	// Dir holds the manifests; the default is DefaultContainersDir.
	Dir string `yaml:"dir"`
	// Logs holds the defaults of the containers' logs.
	Logs ContainerLogs `yaml:"logs"`
}

// DefaultContainersDir is where container manifests live.
const DefaultContainersDir = "/etc/photon/containers"

// ContainerLogs holds the defaults of every container's log: the rotation
// of /var/log/photon/NAME.log (a manifest's logging section overrides
// max_size and max_files for its container) and the rate of its lines on
// the console. A field left out (zero) means photon-init's default, given
// in brackets.
type ContainerLogs struct {
	// MaxSize is the size at which a log file is rotated [10m]; at least
	// 4k.
	MaxSize ByteSize `yaml:"max_size"`
	// MaxFiles is the number of rotated files kept, NAME.log.1 ... [3];
	// 1 to 1000.
	MaxFiles int `yaml:"max_files"`
	// ConsoleLinesPerSecond is the average number of a container's lines
	// shown on the console each second; the others are counted and the
	// count shown [50]; 1 to 100000.
	ConsoleLinesPerSecond int `yaml:"console_lines_per_second"`
	// ConsoleBurst is the most lines of a container shown at once [200];
	// 1 to 100000.
	ConsoleBurst int `yaml:"console_burst"`
}

// ByteSize is a size in bytes, written as a number of bytes or with a
// binary unit as Compose takes sizes: "10m", "512k", "1g", "64mb" and
// "1GiB" all count in 1024s, whatever the case.
type ByteSize int64

// UnmarshalYAML parses a size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "expected a size, found a %s", kindName(n.Kind))
	}
	v, err := units.RAMInBytes(strings.TrimSpace(n.Value))
	if err != nil || v < 0 {
		return nodeError(n, "%q is not a size (such as 10m, 512k, 1g or a number of bytes)", n.Value)
	}
	*b = ByteSize(v)
	return nil
}

// Console configures photon-init's console output.
type Console struct {
	// LogLevel is the least severe level shown: debug, info, warn or
	// error. The default is info.
	LogLevel string `yaml:"loglevel"`
	// Quiet shows only errors on the console.
	Quiet bool `yaml:"quiet"`
}

// Scalar is a YAML scalar kept as its text, so that `1`, `"1"` and `yes`
// are all accepted where the kernel wants a string.
type Scalar string

// UnmarshalYAML accepts any scalar and rejects sequences and mappings.
func (s *Scalar) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "expected a scalar value, found a %s", kindName(n.Kind))
	}
	*s = Scalar(n.Value)
	return nil
}

// nodeError is a decoding error at n's line, in the form yamlErrors reads;
// decoding goes on to find further errors.
func nodeError(n *yaml.Node, format string, a ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, a...)}}
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}

// Error is a configuration error at a position in a file.
type Error struct {
	File string
	Line int // 0 when the position is unknown
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Errors is every error found in one file, in line order.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Load reads and validates the configuration at path. A missing file is not
// an error: it yields an empty Config and an error matching os.ErrNotExist,
// which callers usually ignore.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &Config{}, err
		}
		return &Config{}, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates configuration text; name is used in errors.
// On error the returned Config holds nothing (never half a file).
func Parse(name string, data []byte) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return &Config{}, yamlErrors(name, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return &Config{}, yamlErrors(name, err)
	}
	if errs := cfg.validate(name, &root); len(errs) > 0 {
		return &Config{}, errs
	}
	return &cfg, nil
}

// The regular expressions are compiled on first use, not at package init,
// which every exec of the binary pays (PID 1 and each container's init).
var yamlLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`) })

// yamlErrors turns yaml.v3's messages ("yaml: line 3: ...", or a TypeError
// holding "line 3: field x not found in type config.Config") into Errors.
func yamlErrors(name string, err error) Errors {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out Errors
	for _, m := range msgs {
		e := &Error{File: name, Msg: strings.TrimPrefix(m, "yaml: ")}
		if sm := yamlLine().FindStringSubmatch(m); sm != nil {
			e.Line, _ = strconv.Atoi(sm[1])
			e.Msg = sm[2]
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}
