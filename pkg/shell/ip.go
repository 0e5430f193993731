package shell

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Netlink is what ip asks the kernel; *netlink.Handle has these methods.
type Netlink interface {
	LinkList() ([]netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	RouteList(link netlink.Link, family int) ([]netlink.Route, error)
}

// kernelNetlink asks the kernel of the calling thread's network namespace.
type kernelNetlink struct{}

// LinkList lists the links.
func (kernelNetlink) LinkList() ([]netlink.Link, error) { return netlink.LinkList() }

// AddrList lists a link's addresses.
func (kernelNetlink) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	return netlink.AddrList(l, family)
}

// RouteList lists the main table's routes, of one link when l is not nil.
func (kernelNetlink) RouteList(l netlink.Link, family int) ([]netlink.Route, error) {
	return netlink.RouteList(l, family)
}

// ipObject resolves the object word of ip as iproute2 does: any prefix
// of "address", "route" or "link" (the first of them wins for "a", "r",
// "l").
func ipObject(word string) string {
	for _, obj := range []string{"address", "route", "link"} {
		if word != "" && strings.HasPrefix(obj, word) {
			return obj
		}
	}
	return ""
}

func cmdIP(ctx context.Context, env *Env, args []string) error {
	family := netlink.FAMILY_ALL
	rest := args[1:]
	for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
		switch rest[0] {
		case "-4":
			family = netlink.FAMILY_V4
		case "-6":
			family = netlink.FAMILY_V6
		default:
			return fmt.Errorf("unknown option %s; %w", rest[0], usageError(env, "ip"))
		}
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return usageError(env, "ip")
	}
	word := rest[0]
	obj := ipObject(word)
	rest = rest[1:]
	if len(rest) > 0 && (rest[0] == "show" || rest[0] == "list" || rest[0] == "ls") {
		rest = rest[1:]
	}
	if len(rest) > 0 && rest[0] == "dev" {
		rest = rest[1:]
	}
	dev := ""
	switch len(rest) {
	case 0:
	case 1:
		dev = rest[0]
	default:
		return fmt.Errorf("this ip only shows (no changes); %w", usageError(env, "ip"))
	}
	nl := env.shell.opts.Net
	switch obj {
	case "address":
		return showAddrs(env.Stdout, nl, family, dev, true)
	case "link":
		return showAddrs(env.Stdout, nl, family, dev, false)
	case "route":
		if family == netlink.FAMILY_ALL {
			family = netlink.FAMILY_V4 // as iproute2 does
		}
		return showRoutes(env.Stdout, nl, family, dev)
	}
	return fmt.Errorf("unknown object %q; %w", word, usageError(env, "ip"))
}

// links returns the links sorted by index, only dev's when dev is set.
func links(nl Netlink, dev string) ([]netlink.Link, error) {
	ls, err := nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].Attrs().Index < ls[j].Attrs().Index })
	if dev == "" {
		return ls, nil
	}
	for _, l := range ls {
		if l.Attrs().Name == dev {
			return []netlink.Link{l}, nil
		}
	}
	return nil, fmt.Errorf("no link %q", dev)
}

// showAddrs prints links like "ip addr" (withAddrs) or "ip link".
func showAddrs(w io.Writer, nl Netlink, family int, dev string, withAddrs bool) error {
	ls, err := links(nl, dev)
	if err != nil {
		return err
	}
	names := map[int]string{}
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range ls {
		a := l.Attrs()
		fmt.Fprintf(w, "%d: %s: <%s> mtu %d", a.Index, a.Name, linkFlags(a.RawFlags), a.MTU)
		if a.MasterIndex > 0 {
			master := names[a.MasterIndex]
			if master == "" {
				master = fmt.Sprintf("if%d", a.MasterIndex)
			}
			fmt.Fprintf(w, " master %s", master)
		}
		fmt.Fprintf(w, " state %s", strings.ToUpper(a.OperState.String()))
		if t := l.Type(); t != "device" && t != "" {
			fmt.Fprintf(w, " type %s", t)
		}
		fmt.Fprintln(w)
		encap := a.EncapType
		if encap == "" {
			encap = "none"
		}
		if len(a.HardwareAddr) > 0 {
			fmt.Fprintf(w, "    link/%s %s\n", encap, a.HardwareAddr)
		} else {
			fmt.Fprintf(w, "    link/%s\n", encap)
		}
		if !withAddrs {
			continue
		}
		addrs, err := nl.AddrList(l, family)
		if err != nil {
			return fmt.Errorf("addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			fmt.Fprintf(w, "    %s\n", formatAddr(ad, a.Name))
		}
	}
	return nil
}

// linkFlags renders IFF_* flags as ip does: "BROADCAST,MULTICAST,UP,LOWER_UP".
func linkFlags(raw uint32) string {
	var out []string
	for _, f := range []struct {
		bit  uint32
		name string
	}{
		{unix.IFF_LOOPBACK, "LOOPBACK"}, {unix.IFF_BROADCAST, "BROADCAST"}, {unix.IFF_POINTOPOINT, "POINTOPOINT"},
		{unix.IFF_MULTICAST, "MULTICAST"}, {unix.IFF_NOARP, "NOARP"}, {unix.IFF_PROMISC, "PROMISC"},
		{unix.IFF_UP, "UP"}, {unix.IFF_LOWER_UP, "LOWER_UP"},
	} {
		if raw&f.bit != 0 {
			out = append(out, f.name)
		}
	}
	return strings.Join(out, ",")
}

// formatAddr renders one address: "inet 10.0.2.15/24 brd 10.0.2.255 scope global eth0".
func formatAddr(a netlink.Addr, dev string) string {
	kind := "inet"
	if a.IP.To4() == nil {
		kind = "inet6"
	}
	s := kind + " " + a.IPNet.String()
	if a.Peer != nil {
		s += " peer " + a.Peer.String()
	}
	if a.Broadcast != nil && !a.Broadcast.IsUnspecified() {
		s += " brd " + a.Broadcast.String()
	}
	s += " scope " + scopeName(netlink.Scope(a.Scope))
	if a.Flags&unix.IFA_F_PERMANENT == 0 {
		s += " dynamic"
	}
	if kind == "inet" {
		label := a.Label
		if label == "" {
			label = dev
		}
		s += " " + label
	}
	return s
}

// showRoutes prints the main table's routes like "ip route".
func showRoutes(w io.Writer, nl Netlink, family int, dev string) error {
	var link netlink.Link
	all, err := links(nl, "")
	if err != nil {
		return err
	}
	names := map[int]string{}
	for _, l := range all {
		names[l.Attrs().Index] = l.Attrs().Name
		if dev != "" && l.Attrs().Name == dev {
			link = l
		}
	}
	if dev != "" && link == nil {
		return fmt.Errorf("no link %q", dev)
	}
	routes, err := nl.RouteList(link, family)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		fmt.Fprintln(w, formatRoute(r, names))
	}
	return nil
}

// formatRoute renders a route as ip does:
// "default via 10.0.2.2 dev eth0 proto dhcp src 10.0.2.15 metric 100".
func formatRoute(r netlink.Route, names map[int]string) string {
	var b strings.Builder
	switch r.Type {
	case unix.RTN_BLACKHOLE:
		b.WriteString("blackhole ")
	case unix.RTN_UNREACHABLE:
		b.WriteString("unreachable ")
	case unix.RTN_PROHIBIT:
		b.WriteString("prohibit ")
	}
	if r.Dst == nil || isDefault(r.Dst) {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst.String())
	}
	if r.Gw != nil {
		b.WriteString(" via " + r.Gw.String())
	}
	if r.LinkIndex > 0 {
		name := names[r.LinkIndex]
		if name == "" {
			name = fmt.Sprintf("if%d", r.LinkIndex)
		}
		b.WriteString(" dev " + name)
	}
	if r.Protocol != unix.RTPROT_BOOT && r.Protocol != 0 {
		b.WriteString(" proto " + r.Protocol.String())
	}
	if r.Scope != netlink.SCOPE_UNIVERSE {
		b.WriteString(" scope " + scopeName(r.Scope))
	}
	if r.Src != nil {
		b.WriteString(" src " + r.Src.String())
	}
	if r.Priority > 0 {
		fmt.Fprintf(&b, " metric %d", r.Priority)
	}
	return b.String()
}

// isDefault reports whether dst is 0.0.0.0/0 or ::/0.
func isDefault(dst *net.IPNet) bool {
	ones, _ := dst.Mask.Size()
	return ones == 0 && dst.IP.IsUnspecified()
}

// scopeName names a scope as ip does ("global" for universe).
func scopeName(s netlink.Scope) string {
	if s == netlink.SCOPE_UNIVERSE {
		return "global"
	}
	return s.String()
}
