package dhcp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/photon-init/photon-init/pkg/net/ipconfig"
)

// Lease is a bound DHCPv4 lease and what came with it.
type Lease struct {
	// Interface is the link's name.
	Interface string
	// Address is the leased address with the subnet's prefix length.
	Address netip.Prefix
	// Server is the server identifier of the server that granted it.
	Server netip.Addr
	// Routers are the default routers (option 3).
	Routers []netip.Addr
	// Routes are classless static routes (option 121); when present the
	// routers are ignored (RFC 3442). A Via that is not valid means the
	// destination is on the link.
	Routes []Route
	// DNS are the name servers (option 6).
	DNS []netip.Addr
	// Search are the search domains (option 119, or the domain name,
	// option 15, when 119 is absent).
	Search []string
	// Hostname is the host name the server gave (option 12).
	Hostname string
	// MTU is the interface MTU (option 26); 0 when not given.
	MTU int
	// Duration is the lease time; 0 is an infinite lease.
	Duration time.Duration
	// T1 and T2 are the renewal and rebinding times after Bound.
	T1, T2 time.Duration
	// Bound is when the lease was granted or last renewed.
	Bound time.Time

	raw *nclient4.Lease
}

// Route is a classless static route from a lease.
type Route struct {
	To  netip.Prefix
	Via netip.Addr
}

// Expires is when the lease runs out (zero for an infinite lease).
func (l *Lease) Expires() time.Time {
	if l.Duration == 0 {
		return time.Time{}
	}
	return l.Bound.Add(l.Duration)
}

// Remaining is the lease time left at now (0 for an infinite lease, at
// least one second otherwise).
func (l *Lease) Remaining(now time.Time) time.Duration {
	if l.Duration == 0 {
		return 0
	}
	d := l.Expires().Sub(now)
	if d < time.Second {
		d = time.Second
	}
	return d
}

// String is the one-line summary shown on the console.
func (l *Lease) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s from %s", l.Address, l.Server)
	if l.Duration == 0 {
		b.WriteString(" for ever")
	} else {
		fmt.Fprintf(&b, " for %s", l.Duration)
	}
	if len(l.Routers) > 0 {
		fmt.Fprintf(&b, ", router %s", joinAddrs(l.Routers))
	}
	if len(l.DNS) > 0 {
		fmt.Fprintf(&b, ", dns %s", joinAddrs(l.DNS))
	}
	if len(l.Search) > 0 {
		fmt.Fprintf(&b, ", search %s", strings.Join(l.Search, " "))
	}
	if l.MTU > 0 {
		fmt.Fprintf(&b, ", mtu %d", l.MTU)
	}
	if l.Hostname != "" {
		fmt.Fprintf(&b, ", hostname %s", l.Hostname)
	}
	return b.String()
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// infinite is the lease time that means for ever (RFC 2131 §3.3).
const infinite = 0xffffffff * time.Second

// defaultLeaseTime is used when an ACK carries no lease time, which RFC
// 2131 does not allow but a broken server might do.
const defaultLeaseTime = time.Hour

// newLease reads the lease the ACK grants.
func newLease(ifname string, raw *nclient4.Lease, now time.Time) (*Lease, error) {
	ack := raw.ACK
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || !ip.IsValid() || ip.IsUnspecified() {
		return nil, fmt.Errorf("ACK from %s grants no address", ack.ServerIdentifier())
	}
	bits := 0
	if mask := ack.SubnetMask(); mask != nil {
		bits, _ = mask.Size()
	}
	if bits == 0 || bits > 32 {
		bits = ipconfig.ClassfulBits(ip)
	}
	l := &Lease{
		Interface: ifname,
		Address:   netip.PrefixFrom(ip, bits),
		Server:    addrOf(ack.ServerIdentifier()),
		Hostname:  strings.TrimSuffix(ack.HostName(), "."),
		Bound:     now,
		raw:       raw,
	}
	if !l.Server.IsValid() && raw.Offer != nil {
		l.Server = addrOf(raw.Offer.ServerIdentifier())
	}
	for _, r := range ack.Router() {
		if a := addrOf(r); a.IsValid() && !a.IsUnspecified() {
			l.Routers = append(l.Routers, a)
		}
	}
	for _, r := range ack.ClasslessStaticRoute() {
		if r == nil || r.Dest == nil {
			continue
		}
		dst, ok := netip.AddrFromSlice(r.Dest.IP.To4())
		if !ok {
			continue
		}
		ones, _ := r.Dest.Mask.Size()
		rt := Route{To: netip.PrefixFrom(dst, ones).Masked()}
		if via := addrOf(r.Router); via.IsValid() && !via.IsUnspecified() {
			rt.Via = via
		}
		l.Routes = append(l.Routes, rt)
	}
	for _, d := range ack.DNS() {
		if a := addrOf(d); a.IsValid() && !a.IsUnspecified() {
			l.DNS = append(l.DNS, a)
		}
	}
	if labels := ack.DomainSearch(); labels != nil {
		for _, s := range labels.Labels {
			if s = strings.TrimSuffix(s, "."); s != "" {
				l.Search = append(l.Search, s)
			}
		}
	}
	if len(l.Search) == 0 {
		if d := strings.TrimSuffix(ack.DomainName(), "."); d != "" {
			l.Search = []string{d}
		}
	}
	if v := ack.GetOneOption(dhcpv4.OptionInterfaceMTU); len(v) == 2 {
		if mtu := int(binary.BigEndian.Uint16(v)); mtu >= 68 {
			l.MTU = mtu
		}
	}
	l.Duration = ack.IPAddressLeaseTime(defaultLeaseTime)
	if l.Duration >= infinite {
		l.Duration = 0
		return l, nil
	}
	if l.Duration < time.Second {
		l.Duration = time.Second
	}
	l.T1 = ack.IPAddressRenewalTime(l.Duration / 2)
	l.T2 = ack.IPAddressRebindingTime(l.Duration * 7 / 8)
	if l.T2 <= 0 || l.T2 >= l.Duration {
		l.T2 = l.Duration * 7 / 8
	}
	if l.T1 <= 0 || l.T1 >= l.T2 {
		l.T1 = l.T2 * 4 / 7 // half the lease when T2 is the default
	}
	return l, nil
}

// addrOf converts an IPv4 net.IP, or returns the zero Addr.
func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		return netip.Addr{}
	}
	return a
}
