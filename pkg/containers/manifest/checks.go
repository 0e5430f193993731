package manifest

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/mattn/go-shellwords"
	"gopkg.in/yaml.v3"
)

// crossChecks finds problems between fields of one manifest. lines maps
// a top-level field to its value node.
func (d *decoder) crossChecks(c *Container, lines map[string]*yaml.Node) {
	d.duplicates(d.placedMounts, "target %s is already mounted by %s (line %d)")
	d.duplicates(d.placedDevices, "device %s is already given by %s (line %d)")
	d.portClashes()
	drop := map[string]bool{}
	for _, p := range d.placedCaps["cap_drop"] {
		drop[p.key] = true
	}
	for _, p := range d.placedCaps["cap_add"] {
		if drop[p.key] {
			d.errorf(p.node, p.field, "%s is in both cap_add and cap_drop", p.key)
		}
	}
	mode := c.NetworkMode
	if n := lines["network_mode"]; n != nil && mode != "" {
		if name := c.NetworkContainer(); name != "" && name == c.Name {
			d.errorf(n, "network_mode", "a container cannot share its own network")
		}
		if n := lines["ports"]; n != nil && mode != "bridge" && len(c.Ports) > 0 {
			d.errorf(n, "ports", "ports are published only with bridge networking, not with network_mode %s", mode)
		}
		if n := lines["hostname"]; n != nil && c.NetworkContainer() != "" {
			d.errorf(n, "hostname", "a container sharing another's network (%s) has that container's host name", mode)
		}
		if n := lines["sysctls"]; n != nil && (mode == "host" || c.NetworkContainer() != "") {
			for k := range c.Sysctls {
				if strings.HasPrefix(k, "net.") {
					d.errorf(n, "sysctls", "net.* sysctls need the container's own network namespace, not network_mode %s", mode)
					break
				}
			}
		}
	}
	if n := lines["depends_on"]; n != nil {
		if _, self := c.DependsOn[c.Name]; self {
			d.errorf(n, "depends_on", "a container cannot depend on itself (%s)", c.Name)
		}
	}
}

// duplicates reports every value placed a second time.
func (d *decoder) duplicates(ps []placed, format string) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].node.Line < ps[j].node.Line })
	first := map[string]placed{}
	for _, p := range ps {
		if f, dup := first[p.key]; dup {
			d.errorf(p.node, p.field, format, p.key, f.field, f.node.Line)
			continue
		}
		first[p.key] = p
	}
}

// portClashes reports a host port published twice on overlapping
// addresses (an empty, 0.0.0.0 or :: address overlaps every other).
func (d *decoder) portClashes() {
	ps := d.placedPorts
	for i, p := range ps {
		if p.port.HostPort == 0 {
			continue
		}
		for _, q := range ps[:i] {
			if portsClash(p.port, q.port) {
				d.errorf(p.node, p.field, "host port %d/%s is already published by %s (line %d)",
					p.port.HostPort, p.port.Protocol, q.field, q.node.Line)
				break
			}
		}
	}
}

// portsClash reports whether two published ports take the same host
// socket.
func portsClash(a, b Port) bool {
	if a.HostPort == 0 || a.HostPort != b.HostPort || a.Protocol != b.Protocol {
		return false
	}
	wildcard := func(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }
	return a.HostIP == b.HostIP || wildcard(a.HostIP) || wildcard(b.HostIP)
}

// splitCommand splits a command string into words as Compose does
// (go-shellwords: quotes and backslashes, no variable expansion, no
// command substitution). Shell operators are refused rather than
// silently cutting the command short.
func splitCommand(s string) ([]string, error) {
	p := shellwords.NewParser()
	p.ParseEnv, p.ParseBacktick, p.ParseComment = false, false, false
	words, err := p.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q: unbalanced quotes or a stray parenthesis", s)
	}
	if p.Position >= 0 {
		return nil, fmt.Errorf(`%q: shell operators (; & | < >) are not run by a shell here: quote them, or write ["sh", "-c", "..."]`, s)
	}
	if words == nil {
		words = []string{}
	}
	return words, nil
}

// parseEnvFile reads Docker's env-file format: KEY=VALUE lines taken
// literally (no quote removal), blank lines and lines starting with #
// skipped, leading blanks ignored. A line "KEY" alone takes the variable
// from the host's environment in Docker; here it sets nothing.
func parseEnvFile(path string, data []byte) ([]keyValue, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%s: not UTF-8 text", path)
	}
	var out []keyValue
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		line = strings.TrimLeft(line, " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, has := strings.Cut(line, "=")
		if k == "" {
			return nil, fmt.Errorf("%s:%d: no variable name before =", path, i+1)
		}
		if strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%s:%d: variable name %q contains blanks", path, i+1, k)
		}
		out = append(out, keyValue{key: k, val: v, hasVal: has})
	}
	return out, nil
}
