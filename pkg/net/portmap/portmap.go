// Package portmap keeps the machine's published ports: which container
// owns which host port, so that a second container asking for a port
// another one holds is refused with a clear error, and nothing else about
// the first one changes.
//
// Two ports clash when they have the same protocol and host port and
// their host addresses overlap: the unspecified address (every local
// address) overlaps every address, and otherwise only equal addresses
// overlap. Host processes listening on the same port (containers with
// host networking, say) are not known here; the published port wins for
// connections coming from outside, since DNAT happens before delivery.
package portmap

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
)

// Port is one published port.
type Port struct {
	// HostIP is the local address the port is published on; the zero
	// Addr (or 0.0.0.0) means every local address.
	HostIP netip.Addr
	// HostPort is the port on the machine.
	HostPort uint16
	// ContainerPort is the port in the container.
	ContainerPort uint16
	// Protocol is "tcp" or "udp".
	Protocol string
}

// Parse builds a Port from a manifest's fields; hostIP may be "" (every
// address) and must otherwise be an IPv4 address.
func Parse(hostIP string, hostPort, containerPort uint16, protocol string) (Port, error) {
	p := Port{HostPort: hostPort, ContainerPort: containerPort, Protocol: strings.ToLower(protocol)}
	if p.Protocol == "" {
		p.Protocol = "tcp"
	}
	if hostIP != "" {
		a, err := netip.ParseAddr(strings.Trim(hostIP, "[]"))
		if err != nil {
			return Port{}, fmt.Errorf("port %s: host address %q is not an IP address", p, hostIP)
		}
		p.HostIP = a.Unmap()
	}
	if err := p.Validate(); err != nil {
		return Port{}, err
	}
	return p, nil
}

// Validate checks the port can be published on the IPv4 bridge.
func (p Port) Validate() error {
	switch {
	case p.Protocol != "tcp" && p.Protocol != "udp":
		return fmt.Errorf("port %s: protocol %q is not tcp or udp", p, p.Protocol)
	case p.HostPort == 0 || p.ContainerPort == 0:
		return fmt.Errorf("port %s: both a host and a container port are needed", p)
	case p.HostIP.IsValid() && !p.HostIP.Is4():
		return fmt.Errorf("port %s: host address %s is IPv6, and the bridge network is IPv4 only", p, p.HostIP)
	}
	return nil
}

// Any reports whether the port is published on every local address.
func (p Port) Any() bool { return !p.HostIP.IsValid() || p.HostIP.IsUnspecified() }

// String is the port in Compose's short syntax: "8080:80/tcp",
// "127.0.0.1:8080:80/udp".
func (p Port) String() string {
	s := fmt.Sprintf("%d:%d/%s", p.HostPort, p.ContainerPort, p.Protocol)
	if !p.Any() {
		s = p.HostIP.String() + ":" + s
	}
	return s
}

// Clashes reports whether p and q cannot both be published.
func (p Port) Clashes(q Port) bool {
	if p.Protocol != q.Protocol || p.HostPort != q.HostPort {
		return false
	}
	return p.Any() || q.Any() || p.HostIP == q.HostIP
}

// Registry records the published ports of every owner.
type Registry struct {
	mu      sync.Mutex
	byOwner map[string][]Port
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{byOwner: map[string][]Port{}} }

// Reserve records owner's ports, replacing what owner held. When one of
// them clashes with a port of another owner, nothing is recorded and the
// error names the port and its owner.
func (r *Registry) Reserve(owner string, ps []Port) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	owners := make([]string, 0, len(r.byOwner))
	for o := range r.byOwner {
		owners = append(owners, o)
	}
	sort.Strings(owners)
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			return err
		}
		for _, o := range owners {
			if o == owner {
				continue
			}
			for _, q := range r.byOwner[o] {
				if p.Clashes(q) {
					return fmt.Errorf("port %s: host port %d/%s is already published by %s (%s)", p, p.HostPort, p.Protocol, o, q)
				}
			}
		}
	}
	if len(ps) == 0 {
		delete(r.byOwner, owner)
		return nil
	}
	r.byOwner[owner] = append([]Port(nil), ps...)
	return nil
}

// Release forgets owner's ports.
func (r *Registry) Release(owner string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byOwner, owner)
}

// Ports returns owner's ports.
func (r *Registry) Ports(owner string) []Port {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Port(nil), r.byOwner[owner]...)
}
