package boot

import (
	"fmt"
	"strings"

	"github.com/photon-init/photon-init/pkg/config"
)

// Cmdline is what photon-init takes from the kernel command line.
type Cmdline struct {
	// Debug is photon.debug: "" when absent, "1" when given without a
	// value, otherwise its value (e.g. "shell").
	Debug string
	// LogLevel is photon.loglevel (debug, info, warn, error).
	LogLevel string
	// Hostname is photon.hostname.
	Hostname string
	// Modules are photon.modules=a,b (repeatable).
	Modules []string
	// Quiet is photon.console=quiet: only errors on the console.
	Quiet bool
	// Consoles are the console= devices in order, without their options
	// ("ttyS0", "tty0", "hvc0").
	Consoles []string
	// IP are the values of the kernel's ip= parameters, in order; the
	// network step parses them (package net/ipconfig) and reports bad ones.
	IP []string
	// Root is photon.root=: the real root to switch to (LABEL=, UUID=,
	// PARTUUID=, PARTLABEL= or a /dev path), overriding init.yaml's root:
	// source. See docs/storage.md.
	Root string
	// Warnings are problems found while parsing; the boot goes on.
	Warnings []string
}

// SplitCmdline splits a kernel command line into parameters the way the
// kernel does: on spaces, with double quotes grouping (and removed).
func SplitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// ParseCmdline parses the text of /proc/cmdline. Unknown photon.* options
// and bad values are warnings, never errors: a typo on the command line
// must not stop a boot.
func ParseCmdline(s string) Cmdline {
	var c Cmdline
	for _, p := range SplitCmdline(s) {
		key, val, hasVal := strings.Cut(p, "=")
		switch key {
		case "console":
			if dev := consoleDevice(val); dev != "" {
				c.Consoles = append(c.Consoles, dev)
			}
		case "ip":
			c.IP = append(c.IP, val)
		case "photon.debug":
			c.Debug = "1"
			if hasVal && val != "" {
				c.Debug = val
			}
		case "photon.loglevel":
			if config.ValidLogLevel(val) {
				c.LogLevel = val
			} else {
				c.Warnings = append(c.Warnings, fmt.Sprintf("photon.loglevel=%q: not one of %s", val, strings.Join(config.LogLevels, ", ")))
			}
		case "photon.hostname":
			if config.ValidHostname(val) {
				c.Hostname = val
			} else {
				c.Warnings = append(c.Warnings, fmt.Sprintf("photon.hostname=%q: not a valid host name", val))
			}
		case "photon.modules":
			for _, m := range strings.Split(val, ",") {
				switch {
				case m == "":
				case config.ValidModuleName(m):
					c.Modules = append(c.Modules, m)
				default:
					c.Warnings = append(c.Warnings, fmt.Sprintf("photon.modules: %q is not a module name", m))
				}
			}
		case "photon.root":
			if err := config.ValidRootSpec(val); err != nil {
				c.Warnings = append(c.Warnings, fmt.Sprintf("photon.root=%q: %v", val, err))
			} else {
				c.Root = val
			}
		case "photon.console":
			switch val {
			case "quiet":
				c.Quiet = true
			case "normal", "":
				c.Quiet = false
			default:
				c.Warnings = append(c.Warnings, fmt.Sprintf("photon.console=%q: want quiet or normal", val))
			}
		default:
			if strings.HasPrefix(key, "photon.") {
				c.Warnings = append(c.Warnings, fmt.Sprintf("unknown option %s", key))
			}
		}
	}
	return c
}

// consoleDevice returns the device name of a console= value: "ttyS0,115200n8"
// → "ttyS0". Early consoles given by address ("uart8250,io,0x3f8") have no
// device node and yield "".
func consoleDevice(v string) string {
	name, _, _ := strings.Cut(v, ",")
	if name == "" || strings.ContainsAny(name, "/.") || strings.HasPrefix(name, "uart") {
		return ""
	}
	return name
}

// Settings is the effective configuration: init.yaml with the command line
// applied over it.
type Settings struct {
	Hostname string
	Modules  []string
	Sysctl   map[string]config.Scalar
	Rlimits  map[string]config.Scalar
	LogLevel string
	Quiet    bool
	Debug    string
}

// Merge applies the command line over the configuration file: the command
// line wins for single values; module lists are joined.
func Merge(file *config.Config, cl Cmdline) Settings {
	s := Settings{
		Hostname: file.Hostname,
		Modules:  append(append([]string(nil), file.Modules...), cl.Modules...),
		Sysctl:   file.Sysctl,
		Rlimits:  file.Rlimits,
		LogLevel: file.Console.LogLevel,
		Quiet:    file.Console.Quiet || cl.Quiet,
		Debug:    cl.Debug,
	}
	if cl.Hostname != "" {
		s.Hostname = cl.Hostname
	}
	if cl.LogLevel != "" {
		s.LogLevel = cl.LogLevel
	}
	if s.LogLevel == "" {
		s.LogLevel = "info"
	}
	return s
}
