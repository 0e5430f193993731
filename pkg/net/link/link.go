// Package link configures the machine's network links through netlink
// (vishvananda/netlink): which links a configuration entry selects (by
// name, glob or MAC address, or every ethernet device), bringing them up,
// MTU, addresses with their lifetimes, routes, and the per-link IPv6
// router-advertisement sysctl. It works in the network namespace of the
// calling process; it never switches namespaces.
package link

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route protocols, recorded in the kernel so that photon-init's routes can
// be told apart (ip route shows "proto static" or "proto dhcp").
const (
	ProtoStatic = unix.RTPROT_STATIC
	ProtoDHCP   = 16 // RTPROT_DHCP
)

// Match selects links. The zero Match selects every link.
type Match struct {
	// Name is a link name or a shell glob ("en*"); "" matches any name.
	Name string
	// MAC is the link's hardware address; nil matches any.
	MAC net.HardwareAddr
	// Ethernet restricts the match to ethernet devices: real or virtual
	// NICs, not loopback, bridges, veths, bonds, VLANs, tunnels or dummies.
	Ethernet bool
}

// Matches reports whether the link's attributes fit m.
func (m Match) Matches(l netlink.Link) bool {
	a := l.Attrs()
	if m.Name != "" {
		if ok, err := path.Match(m.Name, a.Name); err != nil || !ok {
			return false
		}
	}
	if m.MAC != nil && a.HardwareAddr.String() != m.MAC.String() {
		return false
	}
	return !m.Ethernet || IsEthernet(l)
}

// String describes the match for logs.
func (m Match) String() string {
	s := ""
	if m.Name != "" {
		s = "name " + m.Name
	}
	if m.MAC != nil {
		if s != "" {
			s += " "
		}
		s += "mac " + m.MAC.String()
	}
	if m.Ethernet {
		if s != "" {
			s += " "
		}
		s += "ethernet"
	}
	if s == "" {
		return "any link"
	}
	return s
}

// IsEthernet reports whether l is an ethernet device backed by a driver
// (what DHCP by default is for): netlink type "device" with an ethernet
// hardware type and a 6-byte address. Loopback, bridges, veths, bonds,
// VLANs, tunnels, dummies and wireguard are not.
func IsEthernet(l netlink.Link) bool {
	a := l.Attrs()
	return l.Type() == "device" && a.EncapType == "ether" && len(a.HardwareAddr) == 6 && a.Flags&net.FlagLoopback == 0
}

// Route is a route through a link.
type Route struct {
	// To is the destination; 0.0.0.0/0 or ::/0 for a default route.
	To netip.Prefix
	// Via is the gateway; invalid for a route straight onto the link.
	Via netip.Addr
	// Metric is the route's priority.
	Metric int
	// Protocol is ProtoStatic or ProtoDHCP.
	Protocol int
	// Src is the preferred source address; invalid for none.
	Src netip.Addr
}

// String describes the route like ip route does.
func (r Route) String() string {
	s := r.To.String()
	if r.To.Bits() == 0 {
		s = "default"
	}
	if r.Via.IsValid() {
		s += " via " + r.Via.String()
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	return s
}

// Up sets the link administratively up.
func Up(l netlink.Link) error {
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
	}
	return nil
}

// LoopbackUp brings lo up and makes sure it has 127.0.0.1/8. Bringing lo
// up makes the kernel add that address, so only a lo that was up already
// (a namespace may have lost the address) gets it added.
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		return Up(lo)
	}
	return AddAddress(lo, netip.MustParsePrefix("127.0.0.1/8"), 0)
}

// SetMTU sets the link's MTU when it differs.
func SetMTU(l netlink.Link, mtu int) error {
	if mtu <= 0 || l.Attrs().MTU == mtu {
		return nil
	}
	if err := netlink.LinkSetMTU(l, mtu); err != nil {
		return fmt.Errorf("set %s mtu %d: %w", l.Attrs().Name, mtu, err)
	}
	return nil
}

// AddAddress adds (or refreshes) an address on the link. A lifetime of
// zero is forever; otherwise the kernel removes the address when it runs
// out, unless it is refreshed (a renewed DHCP lease) first.
func AddAddress(l netlink.Link, p netip.Prefix, lifetime time.Duration) error {
	a := &netlink.Addr{IPNet: prefixNet(p)}
	if lifetime > 0 {
		secs := int(lifetime / time.Second)
		if secs < 1 {
			secs = 1
		}
		a.ValidLft, a.PreferedLft = secs, secs
	}
	if err := netlink.AddrReplace(l, a); err != nil {
		return fmt.Errorf("add address %s to %s: %w", p, l.Attrs().Name, err)
	}
	return nil
}

// DelAddress removes an address from the link; an address already gone is
// not an error.
func DelAddress(l netlink.Link, p netip.Prefix) error {
	err := netlink.AddrDel(l, &netlink.Addr{IPNet: prefixNet(p)})
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("remove address %s from %s: %w", p, l.Attrs().Name, err)
	}
	return nil
}

// Addresses lists the link's addresses of a family (unix.AF_INET,
// unix.AF_INET6, or netlink.FAMILY_ALL).
func Addresses(l netlink.Link, family int) ([]netip.Prefix, error) {
	list, err := netlink.AddrList(l, family)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	var out []netip.Prefix
	for _, a := range list {
		if p, ok := netPrefix(a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// AddRoute adds or replaces a route through the link. A gateway outside
// the link's prefixes is reached with the onlink flag.
func AddRoute(l netlink.Link, r Route) error {
	nr := r.netlink(l)
	if err := netlink.RouteReplace(nr); err != nil {
		return fmt.Errorf("add route %s dev %s: %w", r, l.Attrs().Name, err)
	}
	return nil
}

// DelRoute removes a route; a route already gone is not an error.
func DelRoute(l netlink.Link, r Route) error {
	err := netlink.RouteDel(r.netlink(l))
	if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("remove route %s dev %s: %w", r, l.Attrs().Name, err)
	}
	return nil
}

// Routes lists the routes through the link in the main table.
func Routes(l netlink.Link, family int) ([]Route, error) {
	list, err := netlink.RouteList(l, family)
	if err != nil {
		return nil, fmt.Errorf("list routes of %s: %w", l.Attrs().Name, err)
	}
	var out []Route
	for _, nr := range list {
		r := Route{Metric: nr.Priority, Protocol: int(nr.Protocol)}
		if p, ok := netPrefix(nr.Dst); ok {
			r.To = p
		} else if nr.Family == unix.AF_INET6 || (nr.Gw != nil && nr.Gw.To4() == nil) {
			r.To = netip.MustParsePrefix("::/0")
		} else {
			r.To = netip.MustParsePrefix("0.0.0.0/0")
		}
		if a, ok := netip.AddrFromSlice(nr.Gw); ok {
			r.Via = a.Unmap()
		}
		if a, ok := netip.AddrFromSlice(nr.Src); ok {
			r.Src = a.Unmap()
		}
		out = append(out, r)
	}
	return out, nil
}

// netlink converts r into a netlink route through l.
func (r Route) netlink(l netlink.Link) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: l.Attrs().Index,
		Dst:       prefixNet(r.To),
		Priority:  r.Metric,
		Protocol:  netlink.RouteProtocol(r.Protocol),
	}
	if r.To.Addr().Is4() {
		nr.Family = unix.AF_INET
	} else {
		nr.Family = unix.AF_INET6
	}
	if r.Via.IsValid() {
		nr.Gw = net.IP(r.Via.AsSlice())
		if !gatewayOnLink(l, r.Via) {
			nr.Flags = int(netlink.FLAG_ONLINK)
		}
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Src.IsValid() {
		nr.Src = net.IP(r.Src.AsSlice())
	}
	return nr
}

// gatewayOnLink reports whether gw is inside one of the link's prefixes
// (or is IPv6 link-local): otherwise the route needs the onlink flag.
func gatewayOnLink(l netlink.Link, gw netip.Addr) bool {
	if gw.Is6() && gw.IsLinkLocalUnicast() {
		return true
	}
	family := unix.AF_INET
	if gw.Is6() {
		family = unix.AF_INET6
	}
	prefixes, err := Addresses(l, family)
	if err != nil {
		return true // let the kernel decide
	}
	for _, p := range prefixes {
		if p.Masked().Contains(gw) {
			return true
		}
	}
	return false
}

// SetAcceptRA turns IPv6 router advertisements on the link on or off
// (net.ipv6.conf.NAME.accept_ra: 2 when on, so that they are accepted even
// when the machine forwards; 0 when off) and SLAAC with them (autoconf).
// A kernel without IPv6 makes this an error.
func SetAcceptRA(name string, on bool) error {
	ra, auto := "0", "0"
	if on {
		ra, auto = "2", "1"
	}
	dir := "/proc/sys/net/ipv6/conf/" + name + "/"
	for _, kv := range [][2]string{{"accept_ra", ra}, {"autoconf", auto}} {
		if err := os.WriteFile(dir+kv[0], []byte(kv[1]+"\n"), 0); err != nil {
			return fmt.Errorf("sysctl net.ipv6.conf.%s.%s=%s: %w", name, kv[0], kv[1], err)
		}
	}
	return nil
}

// prefixNet converts a prefix to a *net.IPNet keeping the host bits (the
// address on the link), or nil for an invalid prefix.
func prefixNet(p netip.Prefix) *net.IPNet {
	if !p.IsValid() {
		return nil
	}
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

// netPrefix converts a *net.IPNet back.
func netPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// Static is a link's static configuration.
type Static struct {
	// MTU is set when not zero.
	MTU int
	// Addresses are added with no lifetime limit.
	Addresses []netip.Prefix
	// Routes are added after the addresses.
	Routes []Route
	// AcceptRA, when set, turns IPv6 router advertisements on or off.
	AcceptRA *bool
}

// Apply configures the link: router advertisements, MTU, up, addresses,
// routes, in that order. Every item is tried; the errors are joined.
func Apply(l netlink.Link, s Static) error {
	name := l.Attrs().Name
	var errs []error
	if s.AcceptRA != nil {
		errs = append(errs, SetAcceptRA(name, *s.AcceptRA))
	}
	errs = append(errs, SetMTU(l, s.MTU), Up(l))
	for _, p := range s.Addresses {
		errs = append(errs, AddAddress(l, p, 0))
	}
	for _, r := range s.Routes {
		errs = append(errs, AddRoute(l, r))
	}
	return errors.Join(errs...)
}

// Unapply removes the addresses and routes Apply added (routes first).
func Unapply(l netlink.Link, s Static) error {
	var errs []error
	for _, r := range s.Routes {
		errs = append(errs, DelRoute(l, r))
	}
	for _, p := range s.Addresses {
		errs = append(errs, DelAddress(l, p))
	}
	return errors.Join(errs...)
}
