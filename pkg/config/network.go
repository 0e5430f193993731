package config

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Network configures the machine's own links (package net/hostnet). With no
// interfaces listed and no ip= on the kernel command line, every ethernet
// link gets DHCP.
type Network struct {
	// Interfaces configure links; the first entry that matches a link
	// configures it. The kernel's ip= parameter comes before them.
	Interfaces []Interface `yaml:"interfaces"`
	// DNS is resolver configuration added before what leases bring.
	DNS DNS `yaml:"dns"`
	// Bridge configures the bridge of containers with bridge networking
	// (network_mode bridge, the default); unset fields take the
	// runtime's defaults (photon0, 10.88.0.0/16).
	Bridge Bridge `yaml:"bridge"`
}

// Bridge is the containers' bridge network.
type Bridge struct {
	// Name is the bridge link's name.
	Name string `yaml:"name"`
	// Subnet is the IPv4 network of the containers ("10.88.0.0/16"); the
	// bridge takes its first address, containers the following ones.
	Subnet string `yaml:"subnet"`
}

// ParseSubnet parses a bridge subnet: an IPv4 network prefix (no host
// bits set) from /8 to /30.
func ParseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 network prefix (10.88.0.0/16)", s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 prefix: the bridge network is IPv4 only", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set: the network is %s", s, p.Masked())
	}
	if p.Bits() < 8 || p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("%q: the prefix length must be between 8 and 30", s)
	}
	return p, nil
}

// Interface configures the links it matches: by name (exact or a glob such
// as "en*"), by MAC address, or both (then both must match).
type Interface struct {
	// Name is a link name or a shell glob over link names.
	Name string `yaml:"name"`
	// MAC is the link's hardware address ("52:54:00:12:34:56").
	MAC string `yaml:"mac"`
	// DHCP runs a DHCPv4 client on the link. The default is true when no
	// addresses are given, false otherwise.
	DHCP *bool `yaml:"dhcp"`
	// Addresses are static IPv4 or IPv6 addresses with their prefix
	// length ("192.168.1.10/24", "fd00::10/64").
	Addresses []string `yaml:"addresses"`
	// Gateway is the IPv4 default router.
	Gateway string `yaml:"gateway"`
	// Gateway6 is the IPv6 default router.
	Gateway6 string `yaml:"gateway6"`
	// Routes are further static routes through this link.
	Routes []Route `yaml:"routes"`
	// MTU is the link's MTU; 0 leaves it (or lets DHCP set it).
	MTU int `yaml:"mtu"`
	// AcceptRA turns IPv6 router advertisements (and so SLAAC) on or off
	// for the link; unset leaves the kernel's default (on).
	AcceptRA *bool `yaml:"accept_ra"`
}

// Route is a static route.
type Route struct {
	// To is the destination prefix ("10.1.0.0/16", "default").
	To string `yaml:"to"`
	// Via is the next hop; empty for a route straight onto the link.
	Via string `yaml:"via"`
	// Metric is the route's priority (lower wins).
	Metric int `yaml:"metric"`
}

// DNS is static resolver configuration.
type DNS struct {
	// Nameservers are IPv4 or IPv6 addresses.
	Nameservers []string `yaml:"nameservers"`
	// Search are search domains.
	Search []string `yaml:"search"`
	// Options are resolv.conf options ("ndots:2", "edns0").
	Options []string `yaml:"options"`
}

// DHCPEnabled reports whether the interface runs DHCP (see DHCP).
func (i *Interface) DHCPEnabled() bool {
	if i.DHCP != nil {
		return *i.DHCP
	}
	return len(i.Addresses) == 0
}

// Parse parses a route's destination and next hop: To may be
// "default" (IPv4, or IPv6 when Via is an IPv6 address).
func (r Route) Parse() (to netip.Prefix, via netip.Addr, err error) {
	if r.Via != "" {
		if via, err = netip.ParseAddr(r.Via); err != nil {
			return to, via, fmt.Errorf("via %q is not an IP address", r.Via)
		}
	}
	switch r.To {
	case "":
		return to, via, fmt.Errorf("to: a destination prefix is required")
	case "default":
		to = netip.MustParsePrefix("0.0.0.0/0")
		if via.Is6() {
			to = netip.MustParsePrefix("::/0")
		}
	default:
		if to, err = netip.ParsePrefix(r.To); err != nil {
			return to, via, fmt.Errorf("to %q is not a prefix (address/length, or default)", r.To)
		}
		to = to.Masked()
	}
	if via.IsValid() && via.Is4() != to.Addr().Is4() {
		return to, via, fmt.Errorf("via %s and to %s are not of one address family", via, to)
	}
	if r.Metric < 0 {
		return to, via, fmt.Errorf("metric %d is negative", r.Metric)
	}
	return to, via, nil
}

// ValidLinkName reports whether s can name a network link.
func ValidLinkName(s string) bool {
	return s != "" && len(s) <= 15 && s != "." && s != ".." && !strings.ContainsAny(s, "/: \t\n")
}

// validate checks the network section; add reports an error at a line.
func (n *Network) validate(root *yaml.Node, add func(line int, format string, a ...any)) {
	for i := range n.Interfaces {
		n.Interfaces[i].validate(root, strconv.Itoa(i), add)
	}
	if b := n.Bridge.Name; b != "" && !ValidLinkName(b) {
		add(lineOf(root, "network", "bridge", "name"), "network.bridge.name: %q is not a link name (at most 15 characters, no '/', ':' or spaces)", b)
	}
	if s := n.Bridge.Subnet; s != "" {
		if _, err := ParseSubnet(s); err != nil {
			add(lineOf(root, "network", "bridge", "subnet"), "network.bridge.subnet: %v", err)
		}
	}
	for i, s := range n.DNS.Nameservers {
		if _, err := netip.ParseAddr(s); err != nil {
			add(lineOf(root, "network", "dns", "nameservers", strconv.Itoa(i)), "network.dns.nameservers: %q is not an IP address", s)
		}
	}
	for i, s := range n.DNS.Search {
		if !ValidHostname(strings.TrimSuffix(s, ".")) {
			add(lineOf(root, "network", "dns", "search", strconv.Itoa(i)), "network.dns.search: %q is not a domain name", s)
		}
	}
	for i, s := range n.DNS.Options {
		if s == "" || strings.ContainsAny(s, " \t\n") {
			add(lineOf(root, "network", "dns", "options", strconv.Itoa(i)), "network.dns.options: %q is not a resolv.conf option", s)
		}
	}
}

// validate checks one interface entry, the idx'th.
func (it *Interface) validate(root *yaml.Node, idx string, add func(line int, format string, a ...any)) {
	at := func(p ...string) int {
		if l := lineOf(root, append([]string{"network", "interfaces", idx}, p...)...); l > 0 {
			return l
		}
		return lineOf(root, "network", "interfaces", idx)
	}
	field := "network.interfaces[" + idx + "]"
	if it.Name == "" && it.MAC == "" {
		add(at(), "%s: name or mac is required to match a link", field)
	}
	if it.Name != "" {
		if _, err := path.Match(it.Name, ""); err != nil || len(it.Name) > 64 || strings.ContainsAny(it.Name, "/: \t\n") {
			add(at("name"), "%s.name: %q is not a link name or glob", field, it.Name)
		}
	}
	if it.MAC != "" {
		if hw, err := net.ParseMAC(it.MAC); err != nil || len(hw) != 6 {
			add(at("mac"), "%s.mac: %q is not a MAC address (52:54:00:12:34:56)", field, it.MAC)
		}
	}
	var have4, have6 bool
	for i, s := range it.Addresses {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			add(at("addresses", strconv.Itoa(i)), "%s.addresses: %q is not an address with a prefix length (192.168.1.10/24, fd00::10/64)", field, s)
			continue
		}
		have4 = have4 || p.Addr().Is4()
		have6 = have6 || p.Addr().Is6()
	}
	if it.Gateway != "" {
		if a, err := netip.ParseAddr(it.Gateway); err != nil || !a.Is4() {
			add(at("gateway"), "%s.gateway: %q is not an IPv4 address (IPv6 goes in gateway6)", field, it.Gateway)
		} else if !have4 && !it.DHCPEnabled() {
			add(at("gateway"), "%s.gateway: %s needs an IPv4 address on the link", field, it.Gateway)
		}
	}
	if it.Gateway6 != "" {
		if a, err := netip.ParseAddr(it.Gateway6); err != nil || !a.Is6() {
			add(at("gateway6"), "%s.gateway6: %q is not an IPv6 address", field, it.Gateway6)
		}
	}
	for i, r := range it.Routes {
		if _, _, err := r.Parse(); err != nil {
			add(at("routes", strconv.Itoa(i)), "%s.routes[%d]: %v", field, i, err)
		}
	}
	if it.MTU != 0 && (it.MTU < 68 || it.MTU > 65535) {
		add(at("mtu"), "%s.mtu: %d is not between 68 and 65535", field, it.MTU)
	} else if it.MTU != 0 && it.MTU < 1280 && have6 {
		add(at("mtu"), "%s.mtu: %d is below IPv6's minimum of 1280", field, it.MTU)
	}
}
