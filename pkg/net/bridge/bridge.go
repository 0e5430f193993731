// Package bridge builds the links of the containers' bridge network
// through netlink (vishvananda/netlink): the bridge with the network's
// gateway address, IP forwarding, and one veth pair per container network
// namespace — the host end a port of the bridge, the other end "eth0"
// inside the namespace with the container's address and a default route
// through the gateway.
//
// It works in the network namespace of the calling process (the
// machine's) and reaches into container namespaces through netlink
// handles opened there; it never switches the calling thread's
// namespace.
package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/net/link"
)

// ContainerLink is the name of the container's end of its veth pair.
const ContainerLink = "eth0"

// Config describes a bridge.
type Config struct {
	// Name is the bridge link's name ("photon0").
	Name string
	// Subnet is the bridge network; the bridge holds Gateway in it.
	Subnet netip.Prefix
	// Gateway is the bridge's own address, the containers' default
	// router.
	Gateway netip.Addr
	// MTU of the bridge and of every veth; 0 is the kernel's default.
	MTU int
}

// Ensure creates the bridge if it is missing and brings it to cfg: the
// gateway address alone among its IPv4 addresses, up, IPv4 forwarding on
// (net.ipv4.ip_forward) and route_localnet on the bridge (so that
// connections to 127.0.0.1 can be forwarded to a container's published
// port). It refuses a subnet that overlaps a route of another link.
func Ensure(cfg Config) (netlink.Link, error) {
	if !cfg.Subnet.Contains(cfg.Gateway) {
		return nil, fmt.Errorf("bridge %s: gateway %s is not in %s", cfg.Name, cfg.Gateway, cfg.Subnet)
	}
	if err := CheckOverlap(cfg.Name, cfg.Subnet); err != nil {
		return nil, err
	}
	br, err := netlink.LinkByName(cfg.Name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU = cfg.Name, cfg.MTU
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("bridge %s: create: %w", cfg.Name, err)
		}
		if br, err = netlink.LinkByName(cfg.Name); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", cfg.Name, err)
		}
	case err != nil:
		return nil, fmt.Errorf("bridge %s: %w", cfg.Name, err)
	case br.Type() != "bridge":
		return nil, fmt.Errorf("bridge %s: a link of that name exists and is a %s, not a bridge", cfg.Name, br.Type())
	}
	if err := link.SetMTU(br, cfg.MTU); err != nil {
		return nil, err
	}
	want := netip.PrefixFrom(cfg.Gateway, cfg.Subnet.Bits())
	have, err := link.Addresses(br, unix.AF_INET)
	if err != nil {
		return nil, err
	}
	for _, a := range have {
		if a != want {
			if err := link.DelAddress(br, a); err != nil {
				return nil, err
			}
		}
	}
	if err := link.AddAddress(br, want, 0); err != nil {
		return nil, err
	}
	if err := link.Up(br); err != nil {
		return nil, err
	}
	for _, s := range []struct{ key, path string }{
		{"net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"},
		{"net.ipv4.conf." + cfg.Name + ".route_localnet", "/proc/sys/net/ipv4/conf/" + cfg.Name + "/route_localnet"},
	} {
		if err := writeSysctl(s.path, "1"); err != nil {
			return nil, fmt.Errorf("bridge %s: %s=1: %w", cfg.Name, s.key, err)
		}
	}
	return br, nil
}

// CheckOverlap returns an error when subnet overlaps the destination of a
// route (main table, IPv4, not a default route) through a link other than
// the bridge: containers' addresses would shadow that network, or be
// shadowed by it.
func CheckOverlap(bridge string, subnet netip.Prefix) error {
	routes, err := netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("bridge %s: list routes: %w", bridge, err)
	}
	brIndex := -1
	if br, err := netlink.LinkByName(bridge); err == nil {
		brIndex = br.Attrs().Index
	}
	for _, r := range routes {
		if r.Dst == nil || r.LinkIndex == brIndex {
			continue
		}
		dst, ok := prefixOf(r.Dst)
		if !ok || dst.Bits() == 0 || !dst.Overlaps(subnet) {
			continue
		}
		dev := fmt.Sprintf("link %d", r.LinkIndex)
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			dev = l.Attrs().Name
		}
		return fmt.Errorf("bridge %s: subnet %s overlaps the route to %s on %s; choose another subnet (init.yaml network.bridge.subnet)", bridge, subnet, dst, dev)
	}
	return nil
}

// Veth is the host end of a container's veth pair.
type Veth struct {
	Name  string // the link's name on the host
	Alias string // its alias (ip link ... alias), naming its owner
}

// VethConfig describes one container's veth pair.
type VethConfig struct {
	// Name is the host end's name (at most 15 bytes).
	Name string
	// Alias is recorded as the host end's alias, so that a later run can
	// tell whose it was (see Veths).
	Alias string
	// Netns is the path of the container's network namespace.
	Netns string
	// Address is the container's address with the subnet's length.
	Address netip.Prefix
	// Gateway is the default router (the bridge's address).
	Gateway netip.Addr
}

// ContainerMAC is the MAC address of the container end of a veth, derived
// from the container's address as Docker does (a locally administered
// 02:50 prefix, then the four bytes of the IPv4 address): a container
// restarted with its address keeps its MAC, so the machine's neighbour
// entry for the address stays right and traffic to the new container is
// not sent to the old one's MAC until the entry expires.
func ContainerMAC(addr netip.Addr) net.HardwareAddr {
	a := addr.As4()
	return net.HardwareAddr{0x02, 0x50, a[0], a[1], a[2], a[3]}
}

// AddVeth creates a veth pair: the host end a port of br (hairpin on, so
// that a container can reach its own published ports through the
// machine), the other end ContainerLink inside the namespace at cfg.Netns,
// with cfg.Address, up, beside an up loopback and a default route through
// cfg.Gateway, and ContainerMAC(cfg.Address) as its MAC address. A link
// of the same name left on the host is replaced. On failure nothing is
// left.
func AddVeth(br netlink.Link, cfg VethConfig) (err error) {
	fail := func(err error) error { return fmt.Errorf("veth %s: %w", cfg.Name, err) }
	if len(cfg.Name) > unix.IFNAMSIZ-1 {
		return fail(errors.New("name longer than 15 bytes"))
	}
	if err := DelVeth(cfg.Name); err != nil {
		return err
	}
	ns, err := netns.GetFromPath(cfg.Netns)
	if err != nil {
		return fail(fmt.Errorf("open namespace %s: %w", cfg.Netns, err))
	}
	defer ns.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU, attrs.MasterIndex = cfg.Name, br.Attrs().MTU, br.Attrs().Index
	v := &netlink.Veth{LinkAttrs: attrs, PeerName: ContainerLink, PeerNamespace: netlink.NsFd(ns), PeerHardwareAddr: ContainerMAC(cfg.Address.Addr())}
	if err := netlink.LinkAdd(v); err != nil {
		return fail(fmt.Errorf("create: %w", err))
	}
	defer func() {
		if err != nil {
			DelVeth(cfg.Name)
		}
	}()
	host, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		return fail(err)
	}
	if cfg.Alias != "" {
		if err := netlink.LinkSetAlias(host, cfg.Alias); err != nil {
			return fail(fmt.Errorf("set alias: %w", err))
		}
	}
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		return fail(fmt.Errorf("hairpin: %w", err))
	}
	if err := link.Up(host); err != nil {
		return fail(err)
	}
	if err := configureInside(ns, cfg); err != nil {
		return fail(err)
	}
	return nil
}

// configureInside sets up lo and the container's end in its namespace.
func configureInside(ns netns.NsHandle, cfg VethConfig) error {
	h, err := routeHandle(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", cfg.Netns, err)
	}
	defer h.Close()
	if err := loopbackUp(h); err != nil {
		return err
	}
	eth, err := h.LinkByName(ContainerLink)
	if err != nil {
		return fmt.Errorf("find %s in the container: %w", ContainerLink, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: cfg.Address.Addr().AsSlice(), Mask: net.CIDRMask(cfg.Address.Bits(), 32)}}
	if err := h.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("address %s on %s: %w", cfg.Address, ContainerLink, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("set %s up: %w", ContainerLink, err)
	}
	def := &netlink.Route{
		LinkIndex: eth.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:        cfg.Gateway.AsSlice(),
	}
	if err := h.RouteAdd(def); err != nil {
		return fmt.Errorf("default route via %s: %w", cfg.Gateway, err)
	}
	return nil
}

// LoopbackUp brings lo up inside the namespace at path (a namespace with
// no other link: network_mode none).
func LoopbackUp(path string) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := routeHandle(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	return loopbackUp(h)
}

// routeHandle opens a netlink handle in ns for links, addresses and
// routes only: by default a handle opens every family netlink knows, and
// a kernel without XFRM (no xfrm_user module loaded, as in a minimal
// initramfs) refuses that with EPROTONOSUPPORT.
func routeHandle(ns netns.NsHandle) (*netlink.Handle, error) {
	return netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
}

func loopbackUp(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// DelVeth deletes a host-side veth (and so its peer); a missing link is
// no error.
func DelVeth(name string) error {
	l, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("veth %s: %w", name, err)
	}
	if l.Type() != "veth" {
		return fmt.Errorf("veth %s: the link of that name is a %s, not a veth", name, l.Type())
	}
	if err := netlink.LinkDel(l); err != nil && !errors.As(err, &notFound) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("veth %s: delete: %w", name, err)
	}
	return nil
}

// Veths lists the host's veth links whose alias starts with prefix.
func Veths(prefix string) ([]Veth, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []Veth
	for _, l := range links {
		a := l.Attrs()
		if l.Type() == "veth" && strings.HasPrefix(a.Alias, prefix) {
			out = append(out, Veth{Name: a.Name, Alias: a.Alias})
		}
	}
	return out, nil
}

// Delete removes the bridge; a missing bridge is no error.
func Delete(name string) error {
	l, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	if l.Type() != "bridge" {
		return fmt.Errorf("bridge %s: the link of that name is a %s", name, l.Type())
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("bridge %s: delete: %w", name, err)
	}
	return nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits).Masked(), true
}

func writeSysctl(path, value string) error {
	cur, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(cur)) == value {
		return nil
	}
	return os.WriteFile(path, []byte(value), 0o644)
}
