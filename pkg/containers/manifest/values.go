package manifest

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/go-units"
	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"
)

// MaxNameLen is the longest container name: a name becomes the default
// host name (one DNS label), a cgroup and a log file name.
const MaxNameLen = 63

// The regular expressions are compiled on first use, not at package init,
// which every exec of the binary pays (PID 1 and each container's init).
var (
	namePattern   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`) })
	userPattern   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[^:\s]+(:[^:\s]+)?$`) })
	sysctlPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9_-]+(\.[a-zA-Z0-9_:*-]+)+$`) })
)

// ValidName reports whether s can name a container or a named volume:
// [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most MaxNameLen characters.
func ValidName(s string) bool {
	return len(s) <= MaxNameLen && namePattern().MatchString(s)
}

// Restart policies.
const (
	RestartNo            = "no"
	RestartAlways        = "always"
	RestartOnFailure     = "on-failure"
	RestartUnlessStopped = "unless-stopped"
)

// ParseRestart splits a restart policy: "no" (or ""), "always",
// "unless-stopped", "on-failure" or "on-failure:N". maxRetries is N, or 0
// for no limit.
func ParseRestart(s string) (policy string, maxRetries int, err error) {
	switch s {
	case "", RestartNo:
		return RestartNo, 0, nil
	case RestartAlways, RestartUnlessStopped, RestartOnFailure:
		return s, 0, nil
	}
	if n, ok := strings.CutPrefix(s, RestartOnFailure+":"); ok {
		v, err := strconv.Atoi(n)
		if err != nil || v < 0 {
			return "", 0, fmt.Errorf("%q: the retry count after on-failure: must be a whole number", s)
		}
		return RestartOnFailure, v, nil
	}
	return "", 0, fmt.Errorf("%q is not a restart policy (no, always, on-failure[:N], unless-stopped)", s)
}

// ParseSignal parses a signal as Docker does: a name with or without the
// SIG prefix, in any case ("SIGTERM", "term"), "RTMIN+N" / "RTMAX-N", or
// a number from 1 to 64.
func ParseSignal(s string) (unix.Signal, error) {
	bad := fmt.Errorf("%q is not a signal (a name such as SIGTERM or TERM, or a number)", s)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > sigRTMax {
			return 0, bad
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	name = strings.TrimPrefix(name, "SIG")
	if rest, ok := strings.CutPrefix(name, "RTMIN"); ok {
		return rtSignal(rest, sigRTMin, 1, bad)
	}
	if rest, ok := strings.CutPrefix(name, "RTMAX"); ok {
		return rtSignal(rest, sigRTMax, -1, bad)
	}
	if sig := unix.SignalNum("SIG" + name); sig != 0 {
		return sig, nil
	}
	return 0, bad
}

// Real-time signals as glibc numbers them (the C library keeps 32 and 33).
const (
	sigRTMin = 34
	sigRTMax = 64
)

// rtSignal parses the "+N" (or "-N") after RTMIN (or RTMAX).
func rtSignal(rest string, base, sign int, bad error) (unix.Signal, error) {
	if rest == "" {
		return unix.Signal(base), nil
	}
	op := "+"
	if sign < 0 {
		op = "-"
	}
	n, err := strconv.Atoi(strings.TrimPrefix(rest, op))
	if !strings.HasPrefix(rest, op) || err != nil || n < 0 || n > sigRTMax-sigRTMin {
		return 0, bad
	}
	return unix.Signal(base + sign*n), nil
}

// normalizeSignal validates a stop_signal and writes names in the
// "SIGTERM" form; numbers and RTMIN/RTMAX forms are kept as written.
func normalizeSignal(s string) (string, error) {
	sig, err := ParseSignal(s)
	if err != nil {
		return "", err
	}
	if _, err := strconv.Atoi(s); err == nil {
		return s, nil
	}
	if name := unix.SignalName(sig); name != "" {
		return name, nil
	}
	return "SIG" + strings.TrimPrefix(strings.ToUpper(s), "SIG"), nil
}

// knownCaps maps "CAP_X" to true for every capability the library knows.
func knownCaps() map[string]bool {
	m := map[string]bool{}
	for _, c := range capability.ListKnown() {
		m["CAP_"+strings.ToUpper(c.String())] = true
	}
	return m
}

// normalizeCap turns "net_admin", "NET_ADMIN" or "CAP_NET_ADMIN" into
// "CAP_NET_ADMIN", and "all" into "ALL".
func normalizeCap(s string, known map[string]bool) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if u == "ALL" {
		return u, nil
	}
	if !strings.HasPrefix(u, "CAP_") {
		u = "CAP_" + u
	}
	if !known[u] {
		return "", fmt.Errorf("%q is not a capability (such as NET_ADMIN or CAP_NET_ADMIN, or ALL)", s)
	}
	return u, nil
}

// parsePorts parses Compose's short port syntax
// "[HOST_IP:][HOST:]CONTAINER[/PROTO]", where HOST and CONTAINER may be
// ranges ("8000-8010"); a range gives one Port per port. An IPv6 host
// address is written in brackets: "[::1]:8080:80".
func parsePorts(spec string) ([]Port, error) {
	rest, proto, hasProto := strings.Cut(spec, "/")
	if !hasProto {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" {
		return nil, fmt.Errorf("%q: protocol must be tcp or udp", spec)
	}
	var ip string
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]")
		if end < 0 || !strings.HasPrefix(rest[end+1:], ":") {
			return nil, fmt.Errorf("%q: expected [IPV6]:HOST:CONTAINER", spec)
		}
		ip, rest = rest[1:end], rest[end+2:]
		if a, err := netip.ParseAddr(ip); err != nil || !a.Is6() {
			return nil, fmt.Errorf("%q: %q is not an IPv6 address", spec, ip)
		}
	}
	parts := strings.Split(rest, ":")
	var hostPart, ctrPart string
	switch {
	case len(parts) == 1:
		ctrPart = parts[0]
	case len(parts) == 2:
		hostPart, ctrPart = parts[0], parts[1]
	case len(parts) == 3 && ip == "":
		ip, hostPart, ctrPart = parts[0], parts[1], parts[2]
		if a, err := netip.ParseAddr(ip); err != nil || !a.Is4() {
			return nil, fmt.Errorf("%q: %q is not an IPv4 address (write IPv6 ones in brackets)", spec, ip)
		}
	default:
		return nil, fmt.Errorf("%q: expected [HOST_IP:][HOST:]CONTAINER[/tcp|/udp]", spec)
	}
	if ip != "" && hostPart == "" {
		return nil, fmt.Errorf("%q: a host IP needs a host port", spec)
	}
	ctrLo, ctrHi, err := portRange(ctrPart)
	if err != nil {
		return nil, fmt.Errorf("%q: container port: %w", spec, err)
	}
	var out []Port
	if hostPart == "" {
		for p := ctrLo; p <= ctrHi; p++ {
			out = append(out, Port{ContainerPort: uint16(p), Protocol: proto})
		}
		return out, nil
	}
	hostLo, hostHi, err := portRange(hostPart)
	if err != nil {
		return nil, fmt.Errorf("%q: host port: %w", spec, err)
	}
	if hostHi-hostLo != ctrHi-ctrLo {
		return nil, fmt.Errorf("%q: the host and container ranges differ in size", spec)
	}
	for i := 0; i <= ctrHi-ctrLo; i++ {
		out = append(out, Port{HostIP: ip, HostPort: uint16(hostLo + i), ContainerPort: uint16(ctrLo + i), Protocol: proto})
	}
	return out, nil
}

// portRange parses "80" or "8000-8010".
func portRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = portNumber(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = portNumber(b); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("range %q ends before it starts", s)
		}
	}
	return lo, hi, nil
}

// portNumber parses a port from 1 to 65535.
func portNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return n, nil
}

// parseVolume parses Compose's short volume syntax "SOURCE:TARGET[:MODE]"
// or a lone "TARGET" (an anonymous volume). A SOURCE starting with "/" or
// "." is a host path (relative ones are resolved against dir); anything
// else names a volume. MODE is ro or rw.
func parseVolume(spec, dir string) (Volume, error) {
	parts := strings.Split(spec, ":")
	var v Volume
	var target string
	switch len(parts) {
	case 1:
		target = parts[0]
	case 2, 3:
		target = parts[1]
		if err := setVolumeSource(&v, parts[0], dir); err != nil {
			return Volume{}, fmt.Errorf("%q: %w", spec, err)
		}
		if len(parts) == 3 {
			for _, m := range strings.Split(parts[2], ",") {
				switch m {
				case "ro":
					v.ReadOnly = true
				case "rw":
					v.ReadOnly = false
				default:
					return Volume{}, fmt.Errorf("%q: mode %q is not ro or rw", spec, m)
				}
			}
		}
	default:
		return Volume{}, fmt.Errorf("%q: expected SOURCE:TARGET[:ro|rw] or a lone TARGET", spec)
	}
	t, err := containerPath(target)
	if err != nil {
		return Volume{}, fmt.Errorf("%q: target: %w", spec, err)
	}
	v.Target = t
	return v, nil
}

// setVolumeSource classifies a volume source as a host path or a volume
// name.
func setVolumeSource(v *Volume, src, dir string) error {
	switch {
	case src == "":
		return fmt.Errorf("empty source")
	case strings.HasPrefix(src, "/"), strings.HasPrefix(src, "."):
		v.Type, v.Source = VolumeBind, hostPath(src, dir)
	case ValidName(src):
		v.Type, v.Source = VolumeNamed, src
	default:
		return fmt.Errorf("source %q is neither a path (starting with / or .) nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)", src)
	}
	return nil
}

// hostPath makes a host path absolute against dir and cleans it.
func hostPath(p, dir string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	return filepath.Clean(p)
}

// containerPath checks and cleans an absolute path inside the container;
// "/" itself is refused.
func containerPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%q is not an absolute path", p)
	}
	c := filepath.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("cannot mount over /")
	}
	return c, nil
}

// ParseTmpfs parses one `tmpfs` entry, "PATH[:OPTION,...]", as a tmpfs
// Volume (Target, TmpfsSize, TmpfsMode, ReadOnly) plus the remaining
// options in the order written. Options: size=SIZE (Compose units),
// mode=OCTAL, uid=N, gid=N, nr_inodes=N, and the flags ro, rw, exec,
// noexec, suid, nosuid, dev, nodev. Manifest entries are already valid
// and normalised (size in bytes), so the runtime can call this without
// expecting errors.
func ParseTmpfs(entry string) (Volume, []string, error) {
	path, opts, _ := strings.Cut(entry, ":")
	t, err := containerPath(path)
	if err != nil {
		return Volume{}, nil, fmt.Errorf("%q: %w", entry, err)
	}
	v := Volume{Type: VolumeTmpfs, Target: t}
	var rest []string
	if opts == "" {
		return v, nil, nil
	}
	for _, o := range strings.Split(opts, ",") {
		key, val, hasVal := strings.Cut(o, "=")
		switch {
		case key == "size" && hasVal:
			if v.TmpfsSize, err = ParseBytes(val); err != nil {
				return Volume{}, nil, fmt.Errorf("%q: size: %w", entry, err)
			}
		case key == "mode" && hasVal:
			if v.TmpfsMode, err = parseMode(val); err != nil {
				return Volume{}, nil, fmt.Errorf("%q: %w", entry, err)
			}
		case (key == "uid" || key == "gid" || key == "nr_inodes") && hasVal:
			if _, err := strconv.ParseUint(val, 10, 32); err != nil {
				return Volume{}, nil, fmt.Errorf("%q: %s=%q is not a whole number", entry, key, val)
			}
			rest = append(rest, o)
		case o == "ro":
			v.ReadOnly = true
		case o == "rw":
			v.ReadOnly = false
		case o == "exec", o == "noexec", o == "suid", o == "nosuid", o == "dev", o == "nodev":
			rest = append(rest, o)
		default:
			return Volume{}, nil, fmt.Errorf("%q: unknown tmpfs option %q (size=, mode=, uid=, gid=, nr_inodes=, ro, rw, [no]exec, [no]suid, [no]dev)", entry, o)
		}
	}
	return v, rest, nil
}

// formatTmpfs writes a parsed tmpfs entry back in normal form.
func formatTmpfs(v Volume, rest []string) string {
	opts := TmpfsOptions(v, rest)
	if len(opts) == 0 {
		return v.Target
	}
	return v.Target + ":" + strings.Join(opts, ",")
}

// TmpfsOptions returns the mount options of a tmpfs Volume and the rest
// of its options (from ParseTmpfs): size= in bytes and mode= in octal
// when set, ro when read-only, then rest in order.
func TmpfsOptions(v Volume, rest []string) []string {
	var opts []string
	if v.TmpfsSize > 0 {
		opts = append(opts, "size="+strconv.FormatInt(v.TmpfsSize, 10))
	}
	if v.TmpfsMode != 0 {
		opts = append(opts, "mode="+strconv.FormatUint(uint64(v.TmpfsMode), 8))
	}
	if v.ReadOnly {
		opts = append(opts, "ro")
	}
	return append(opts, rest...)
}

// parseMode parses a file mode written in octal, with or without a
// leading 0 or 0o: "1777", "0755", "0o700".
func parseMode(s string) (uint32, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	m, err := strconv.ParseUint(t, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("mode %q is not an octal file mode (such as 1777 or 0755)", s)
	}
	return uint32(m), nil
}

// parseDevice parses "HOST[:CONTAINER[:PERMS]]" (or "HOST:PERMS").
func parseDevice(spec string) (Device, error) {
	parts := strings.Split(spec, ":")
	if len(parts) > 3 {
		return Device{}, fmt.Errorf("%q: expected HOST[:CONTAINER[:rwm]]", spec)
	}
	var d Device
	d.HostPath = parts[0]
	if !filepath.IsAbs(d.HostPath) {
		return Device{}, fmt.Errorf("%q: host device %q is not an absolute path", spec, d.HostPath)
	}
	d.HostPath = filepath.Clean(d.HostPath)
	d.ContainerPath = d.HostPath
	switch {
	case len(parts) == 2 && validPerms(parts[1]) && !strings.HasPrefix(parts[1], "/"):
		d.Permissions = parts[1]
	case len(parts) >= 2:
		c, err := containerPath(parts[1])
		if err != nil {
			return Device{}, fmt.Errorf("%q: container path: %w", spec, err)
		}
		d.ContainerPath = c
		if len(parts) == 3 {
			if !validPerms(parts[2]) {
				return Device{}, fmt.Errorf("%q: permissions %q are not a combination of r, w and m", spec, parts[2])
			}
			d.Permissions = parts[2]
		}
	}
	return d, nil
}

// validPerms reports whether s is a non-empty combination of r, w and m,
// each at most once.
func validPerms(s string) bool {
	if s == "" || len(s) > 3 {
		return false
	}
	seen := map[rune]bool{}
	for _, r := range s {
		if (r != 'r' && r != 'w' && r != 'm') || seen[r] {
			return false
		}
		seen[r] = true
	}
	return true
}

// checkUlimitName accepts the names Docker and Compose accept (nofile,
// nproc, core, memlock, stack, ...), using go-units' table.
func checkUlimitName(name string) error {
	if _, err := units.ParseUlimit(name + "=0"); err != nil {
		return fmt.Errorf("%q is not a ulimit (core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)", name)
	}
	return nil
}

// namespacedSysctls are the sysctls a container may set without sharing
// them with the machine (Docker's and runc's list); net.* and fs.mqueue.*
// are allowed as prefixes.
var namespacedSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true,
	"kernel.sem": true, "kernel.shmall": true, "kernel.shmmax": true,
	"kernel.shmmni": true, "kernel.shm_rmid_forced": true,
	"kernel.domainname": true,
}

// checkSysctl accepts a namespaced sysctl key in dotted form.
func checkSysctl(key string) error {
	if !sysctlPattern().MatchString(key) {
		return fmt.Errorf("%q is not a sysctl key (dotted, such as net.ipv4.ip_forward)", key)
	}
	if namespacedSysctls[key] || strings.HasPrefix(key, "net.") || strings.HasPrefix(key, "fs.mqueue.") {
		return nil
	}
	return fmt.Errorf("%q is not namespaced, so a container cannot set it (set it for the machine in init.yaml's sysctl)", key)
}
