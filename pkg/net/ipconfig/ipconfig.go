// Package ipconfig parses the kernel's standard ip= boot parameter, in the
// syntax of the kernel's nfsroot documentation:
//
//	ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>
//
// and its short forms ip=dhcp (or on, any, bootp, both) and ip=off (or
// none). Fields may be left empty and trailing fields left out. dracut's
// ip=<device>:<autoconf> form is accepted too.
//
// The kernel's rules are followed where they matter to a host that is
// configured after the kernel has booted: a client address makes the
// configuration static unless autoconf asks for dhcp, bootp or both
// (the kernel does the same with a single device); an empty netmask is the
// address's classful one; an empty device means every ethernet link for
// DHCP and the first one for a static address. RARP is not supported, nor
// is IPv6 (the kernel accepts neither here either: use init.yaml).
package ipconfig

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/photon-init/photon-init/pkg/config"
)

// Method is how a link gets its addresses.
type Method int

const (
	// Off configures nothing: ip=off or ip=none.
	Off Method = iota
	// Static assigns the client address.
	Static
	// DHCP asks a DHCP server.
	DHCP
)

// String returns the method's name.
func (m Method) String() string {
	switch m {
	case Static:
		return "static"
	case DHCP:
		return "dhcp"
	}
	return "off"
}

// Param is one parsed ip= parameter.
type Param struct {
	// Method is how the link is configured.
	Method Method
	// Device is the link's name; "" means any ethernet link.
	Device string
	// Address is the static client address with its netmask (Static only).
	Address netip.Prefix
	// Server is the NFS root server (kept for completeness; unused).
	Server netip.Addr
	// Gateway is the default router, if any.
	Gateway netip.Addr
	// Hostname is the machine's host name, if given.
	Hostname string
	// DNS are the name servers dns0 and dns1 that were given.
	DNS []netip.Addr
	// NTP is the NTP server, if given (unused by photon-init).
	NTP netip.Addr
}

// maxFields is the number of colon-separated fields the kernel knows.
const maxFields = 10

// Parse parses the value of one ip= parameter (without "ip=").
func Parse(value string) (Param, error) {
	if value == "" {
		return Param{}, fmt.Errorf("ip=: empty value")
	}
	fields := strings.Split(value, ":")
	if len(fields) == 1 {
		m, err := parseAutoconf(fields[0])
		if err != nil {
			return Param{}, fmt.Errorf("ip=%s: %w", value, err)
		}
		return Param{Method: m}, nil
	}
	if _, err := netip.ParseAddr(fields[0]); len(fields) == 2 && fields[0] != "" && err != nil {
		// dracut's ip=<device>:<autoconf>.
		m, err := parseAutoconf(fields[1])
		if err != nil {
			return Param{}, fmt.Errorf("ip=%s: %w", value, err)
		}
		if err := checkDevice(fields[0]); err != nil {
			return Param{}, fmt.Errorf("ip=%s: %w", value, err)
		}
		return Param{Method: m, Device: fields[0]}, nil
	}
	if len(fields) > maxFields {
		return Param{}, fmt.Errorf("ip=%s: %d fields, at most %d (IPv6 addresses are not accepted here)", value, len(fields), maxFields)
	}
	for len(fields) < maxFields {
		fields = append(fields, "")
	}
	p, err := parseFields(fields)
	if err != nil {
		return Param{}, fmt.Errorf("ip=%s: %w", value, err)
	}
	return p, nil
}

// parseFields parses the ten fields of the long form.
func parseFields(f []string) (Param, error) {
	var p Param
	var err error
	client, err := parseIPv4("client-ip", f[0])
	if err != nil {
		return p, err
	}
	if p.Server, err = parseIPv4("server-ip", f[1]); err != nil {
		return p, err
	}
	if p.Gateway, err = parseIPv4("gw-ip", f[2]); err != nil {
		return p, err
	}
	bits := -1
	if f[3] != "" {
		if bits, err = parseNetmask(f[3]); err != nil {
			return p, err
		}
	}
	if f[4] != "" {
		if !config.ValidHostname(f[4]) {
			return p, fmt.Errorf("hostname %q is not a valid host name", f[4])
		}
		p.Hostname = f[4]
	}
	if f[5] != "" {
		if err := checkDevice(f[5]); err != nil {
			return p, err
		}
		p.Device = f[5]
	}
	auto := DHCP // "" means on/any
	if f[6] != "" {
		if auto, err = parseAutoconf(f[6]); err != nil {
			return p, err
		}
	}
	for i, s := range f[7:9] {
		a, err := parseIPv4(fmt.Sprintf("dns%d-ip", i), s)
		if err != nil {
			return p, err
		}
		if a.IsValid() {
			p.DNS = append(p.DNS, a)
		}
	}
	if p.NTP, err = parseIPv4("ntp0-ip", f[9]); err != nil {
		return p, err
	}
	explicitDHCP := f[6] != "" && auto == DHCP && !strings.EqualFold(f[6], "on") && !strings.EqualFold(f[6], "any")
	switch {
	case client.IsValid() && !explicitDHCP:
		if bits < 0 {
			bits = ClassfulBits(client)
		}
		p.Method = Static
		p.Address = netip.PrefixFrom(client, bits)
		if p.Gateway.IsValid() && !p.Address.Masked().Contains(p.Gateway) {
			return p, fmt.Errorf("gw-ip %s is not in the client's network %s", p.Gateway, p.Address.Masked())
		}
	case client.IsValid():
		p.Method = DHCP
	default:
		if bits >= 0 {
			return p, fmt.Errorf("netmask given without a client-ip")
		}
		p.Method = auto
	}
	return p, nil
}

// parseAutoconf parses an autoconf value.
func parseAutoconf(s string) (Method, error) {
	switch strings.ToLower(s) {
	case "off", "none":
		return Off, nil
	case "on", "any", "dhcp", "bootp", "both":
		return DHCP, nil
	case "rarp":
		return Off, fmt.Errorf("autoconf rarp is not supported (use dhcp or a static address)")
	case "dhcp6", "auto6", "either6", "ibft":
		return Off, fmt.Errorf("autoconf %q is not supported (IPv6 is configured in init.yaml; router advertisements are accepted by default)", s)
	}
	return Off, fmt.Errorf("autoconf %q is not one of off, none, on, any, dhcp, bootp, both", s)
}

// parseIPv4 parses an optional IPv4 address field.
func parseIPv4(field, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%s %q is not an IPv4 address", field, s)
	}
	return a, nil
}

// parseNetmask parses a dotted netmask (255.255.255.0) or a prefix length.
func parseNetmask(s string) (int, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		var n int
		if _, serr := fmt.Sscanf(s, "%d", &n); serr == nil && fmt.Sprint(n) == s && n >= 0 && n <= 32 {
			return n, nil
		}
		return 0, fmt.Errorf("netmask %q is not a dotted IPv4 netmask", s)
	}
	if !a.Is4() {
		return 0, fmt.Errorf("netmask %q is not a dotted IPv4 netmask", s)
	}
	b := a.As4()
	ones, size := net.IPMask(b[:]).Size()
	if size == 0 {
		return 0, fmt.Errorf("netmask %q is not contiguous", s)
	}
	return ones, nil
}

// ClassfulBits is the historical (classful) prefix length of an IPv4
// address: the kernel's default netmask, and a DHCP client's when a server
// sends none.
func ClassfulBits(a netip.Addr) int {
	switch b := a.As4()[0]; {
	case b < 128:
		return 8
	case b < 192:
		return 16
	}
	return 24
}

// checkDevice rejects what cannot be a link name.
func checkDevice(s string) error {
	if !config.ValidLinkName(s) {
		return fmt.Errorf("device %q is not a network interface name", s)
	}
	return nil
}
