package config

import (
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"
)

// LogLevels are the accepted values of console.loglevel and
// photon.loglevel.
var LogLevels = []string{"debug", "info", "warn", "error"}

// Rlimit names accepted in rlimits, mapped to their resource numbers.
var rlimitNames = map[string]int{
	"as": unix.RLIMIT_AS, "core": unix.RLIMIT_CORE, "cpu": unix.RLIMIT_CPU,
	"data": unix.RLIMIT_DATA, "fsize": unix.RLIMIT_FSIZE,
	"memlock": unix.RLIMIT_MEMLOCK, "nofile": unix.RLIMIT_NOFILE,
	"nproc": unix.RLIMIT_NPROC, "stack": unix.RLIMIT_STACK,
	"sigpending": unix.RLIMIT_SIGPENDING, "msgqueue": unix.RLIMIT_MSGQUEUE,
	"rtprio": unix.RLIMIT_RTPRIO,
}

// The regular expressions are compiled on first use, not at package init,
// which every exec of the binary pays (PID 1 and each container's init).
var (
	hostnameLabel = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`) })
	moduleName    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9_-]+$`) })
	sysctlKey     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9_*-]+([./][a-zA-Z0-9_*:-]+)*$`) })
)

// ValidHostname reports whether h is a valid host name: dot-separated RFC
// 1123 labels, 253 characters at most.
func ValidHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if !hostnameLabel().MatchString(l) {
			return false
		}
	}
	return true
}

// ValidLogLevel reports whether l is one of LogLevels.
func ValidLogLevel(l string) bool {
	for _, v := range LogLevels {
		if l == v {
			return true
		}
	}
	return false
}

// ValidModuleName reports whether m can name a kernel module or alias.
func ValidModuleName(m string) bool { return moduleName().MatchString(m) }

// Rlimit is a parsed resource limit.
type Rlimit struct {
	Resource int
	Soft     uint64
	Hard     uint64
}

// ParseRlimit parses an rlimits entry: "N", "SOFT:HARD", "unlimited".
func ParseRlimit(name, value string) (Rlimit, error) {
	res, ok := rlimitNames[name]
	if !ok {
		names := make([]string, 0, len(rlimitNames))
		for n := range rlimitNames {
			names = append(names, n)
		}
		sort.Strings(names)
		return Rlimit{}, fmt.Errorf("unknown rlimit %q (one of %s)", name, strings.Join(names, ", "))
	}
	parse := func(s string) (uint64, error) {
		if s == "unlimited" || s == "infinity" || s == "-1" {
			return unix.RLIM_INFINITY, nil
		}
		return strconv.ParseUint(s, 10, 64)
	}
	soft, hard, two := strings.Cut(value, ":")
	s, err := parse(soft)
	if err != nil {
		return Rlimit{}, fmt.Errorf("rlimit %s: bad value %q", name, value)
	}
	h := s
	if two {
		if h, err = parse(hard); err != nil {
			return Rlimit{}, fmt.Errorf("rlimit %s: bad value %q", name, value)
		}
	}
	if s > h {
		return Rlimit{}, fmt.Errorf("rlimit %s: soft limit %d above hard limit %d", name, s, h)
	}
	return Rlimit{Resource: res, Soft: s, Hard: h}, nil
}

// SysctlPath returns the /proc/sys path of a dotted or slashed key.
func SysctlPath(key string) string {
	if strings.Contains(key, "/") {
		return "/proc/sys/" + strings.TrimPrefix(key, "/")
	}
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
}

// validate checks values that decoded but are not acceptable; root is the
// same text as a node tree, for line numbers.
func (c *Config) validate(name string, root *yaml.Node) Errors {
	var errs Errors
	add := func(line int, format string, a ...any) {
		errs = append(errs, &Error{File: name, Line: line, Msg: fmt.Sprintf(format, a...)})
	}
	if c.Hostname != "" && !ValidHostname(c.Hostname) {
		add(lineOf(root, "hostname"), "hostname: %q is not a valid host name", c.Hostname)
	}
	for i, m := range c.Modules {
		if !ValidModuleName(m) {
			add(lineOf(root, "modules", strconv.Itoa(i)), "modules: %q is not a module name", m)
		}
	}
	for k := range c.Sysctl {
		if !sysctlKey().MatchString(k) || strings.Contains(k, "..") {
			add(lineOf(root, "sysctl", k), "sysctl: %q is not a sysctl key", k)
		}
	}
	for k, v := range c.Rlimits {
		if _, err := ParseRlimit(k, string(v)); err != nil {
			add(lineOf(root, "rlimits", k), "rlimits: %v", err)
		}
	}
	if c.Console.LogLevel != "" && !ValidLogLevel(c.Console.LogLevel) {
		add(lineOf(root, "console", "loglevel"), "console.loglevel: %q is not one of %s", c.Console.LogLevel, strings.Join(LogLevels, ", "))
	}
	for i, r := range c.Registries.Insecure {
		if !validRegistryHost(r) {
			add(lineOf(root, "registries", "insecure", strconv.Itoa(i)), "registries.insecure: %q is not a registry host (host or host:port)", r)
		}
	}
	if f := c.Registries.AuthFile; f != "" && !strings.HasPrefix(f, "/") {
		add(lineOf(root, "registries", "auth_file"), "registries.auth_file: %q is not an absolute path", f)
	}
	if sh := c.Debug.Shell; sh != "" && !strings.HasPrefix(sh, "/") {
		add(lineOf(root, "debug", "shell"), "debug.shell: %q is not an absolute path", sh)
	}
	if d := c.Containers.Dir; d != "" && !strings.HasPrefix(d, "/") {
		add(lineOf(root, "containers", "dir"), "containers.dir: %q is not an absolute path", d)
	}
	c.Containers.Logs.validate(root, add)
	c.Network.validate(root, add)
	c.validateMounts(root, add)
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	return errs
}

// lineOf finds the line of the value at path (mapping keys, or sequence
// indexes as decimal strings) in a document, or 0.
func lineOf(root *yaml.Node, path ...string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, p := range path {
		switch n.Kind {
		case yaml.MappingNode:
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					n, found = n.Content[i+1], true
					break
				}
			}
			if !found {
				return 0
			}
		case yaml.SequenceNode:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(n.Content) {
				return 0
			}
			n = n.Content[i]
		default:
			return 0
		}
	}
	return n.Line
}

// validRegistryHost accepts "host" and "host:port" (host a name or an
// IPv4 address, or a bracketed IPv6 address).
func validRegistryHost(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, ""
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return false
		}
	}
	if ip := net.ParseIP(host); ip != nil {
		return true
	}
	return ValidHostname(host)
}

// Bounds of containers.logs.
const (
	minLogSize     = 4 << 10
	maxLogSize     = 1 << 40
	maxLogFiles    = 1000
	maxConsoleRate = 100000
)

// validate checks containers.logs; a field that is present must be in its
// range (0 is only the default when the field is left out).
func (l ContainerLogs) validate(root *yaml.Node, add func(line int, format string, a ...any)) {
	at := func(key string) int { return lineOf(root, "containers", "logs", key) }
	if line := at("max_size"); line > 0 && (l.MaxSize < minLogSize || l.MaxSize > maxLogSize) {
		add(line, "containers.logs.max_size: %d bytes is not a log file size (4k to 1t)", l.MaxSize)
	}
	ints := []struct {
		key   string
		v     int
		max   int
		means string
	}{
		{"max_files", l.MaxFiles, maxLogFiles, "a number of files"},
		{"console_lines_per_second", l.ConsoleLinesPerSecond, maxConsoleRate, "a number of lines a second"},
		{"console_burst", l.ConsoleBurst, maxConsoleRate, "a number of lines"},
	}
	for _, f := range ints {
		if line := at(f.key); line > 0 && (f.v < 1 || f.v > f.max) {
			add(line, "containers.logs.%s: %d is not %s (1 to %d)", f.key, f.v, f.means, f.max)
		}
	}
}
