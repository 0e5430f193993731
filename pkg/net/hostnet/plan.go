package hostnet

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/net/dns"
	"github.com/photon-init/photon-init/pkg/net/ipconfig"
	"github.com/photon-init/photon-init/pkg/net/link"
)

// Interface is how the links it matches are configured.
type Interface struct {
	// Match selects links.
	Match link.Match
	// First limits the entry to the first link it matches (ip= with a
	// static address and no device, as the kernel does).
	First bool
	// Source names where the entry comes from, for logs: "ip=...",
	// "init.yaml network.interfaces[N]" or "default".
	Source string
	// Off leaves matched links alone (ip=<device>:off).
	Off bool
	// DHCP runs a DHCPv4 client on the link.
	DHCP bool
	// Static is applied first (it brings the link up).
	Static link.Static
}

// Plan is what Manager configures: the interface entries in order (the
// first matching entry configures a link), static DNS and the host name
// that the command line gave.
type Plan struct {
	Interfaces []Interface
	// DNS is the static resolver configuration (init.yaml, then ip=).
	DNS dns.Config
	// Hostname is the hostname field of ip=, if any.
	Hostname string
	// Off is true when ip=off (or none) turned the network off: only lo
	// is brought up.
	Off bool
}

// NewPlan joins the kernel's ip= parameters (which win) and init.yaml's
// network section. With neither saying anything, every ethernet link gets
// DHCP. Bad ip= values are reported in errs and left out; the rest of the
// plan stands.
func NewPlan(cfg config.Network, ipParams []string) (p Plan, errs []error) {
	for _, v := range ipParams {
		param, err := ipconfig.Parse(v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if param.Method == ipconfig.Off && param.Device == "" {
			p.Off = true
			continue
		}
		if p.Hostname == "" {
			p.Hostname = param.Hostname
		}
		it := Interface{Source: "ip=" + v, Match: link.Match{Name: param.Device}}
		if param.Device == "" {
			it.Match.Ethernet = true
		}
		switch param.Method {
		case ipconfig.Off:
			it.Off = true
		case ipconfig.DHCP:
			it.DHCP = true
		case ipconfig.Static:
			it.First = param.Device == ""
			it.Static.Addresses = []netip.Prefix{param.Address}
			if param.Gateway.IsValid() {
				it.Static.Routes = []link.Route{{To: netip.MustParsePrefix("0.0.0.0/0"), Via: param.Gateway, Protocol: link.ProtoStatic}}
			}
		}
		p.DNS.Nameservers = append(p.DNS.Nameservers, param.DNS...)
		p.Interfaces = append(p.Interfaces, it)
	}
	static, err := dnsFromConfig(cfg.DNS)
	if err != nil {
		errs = append(errs, err)
	}
	p.DNS = dns.Config{
		Nameservers: append(static.Nameservers, p.DNS.Nameservers...),
		Search:      static.Search,
		Options:     static.Options,
	}
	if p.Off {
		p.Interfaces = nil
		return p, errs
	}
	for i, ci := range cfg.Interfaces {
		it, err := interfaceFromConfig(ci)
		if err != nil {
			errs = append(errs, fmt.Errorf("init.yaml network.interfaces[%d]: %w", i, err))
			continue
		}
		it.Source = fmt.Sprintf("init.yaml network.interfaces[%d]", i)
		p.Interfaces = append(p.Interfaces, it)
	}
	if len(p.Interfaces) == 0 && len(cfg.Interfaces) == 0 {
		p.Interfaces = []Interface{DefaultInterface()}
	}
	return p, errs
}

// DefaultInterface is DHCP on every ethernet link.
func DefaultInterface() Interface {
	return Interface{Source: "default", Match: link.Match{Ethernet: true}, DHCP: true}
}

// interfaceFromConfig converts one init.yaml entry (already validated by
// package config; errors here are a safety net).
func interfaceFromConfig(ci config.Interface) (Interface, error) {
	it := Interface{Match: link.Match{Name: ci.Name}, DHCP: ci.DHCPEnabled()}
	if ci.MAC != "" {
		hw, err := net.ParseMAC(ci.MAC)
		if err != nil {
			return it, fmt.Errorf("mac %q: %w", ci.MAC, err)
		}
		it.Match.MAC = hw
	}
	if ci.Name == "" && ci.MAC == "" {
		return it, fmt.Errorf("name or mac is required")
	}
	it.Static.MTU = ci.MTU
	it.Static.AcceptRA = ci.AcceptRA
	for _, s := range ci.Addresses {
		a, err := netip.ParsePrefix(s)
		if err != nil {
			return it, fmt.Errorf("address %q: %w", s, err)
		}
		it.Static.Addresses = append(it.Static.Addresses, a)
	}
	for _, gw := range []struct{ s, dst string }{{ci.Gateway, "0.0.0.0/0"}, {ci.Gateway6, "::/0"}} {
		if gw.s == "" {
			continue
		}
		a, err := netip.ParseAddr(gw.s)
		if err != nil {
			return it, fmt.Errorf("gateway %q: %w", gw.s, err)
		}
		it.Static.Routes = append(it.Static.Routes, link.Route{To: netip.MustParsePrefix(gw.dst), Via: a, Protocol: link.ProtoStatic})
	}
	for i, r := range ci.Routes {
		to, via, err := r.Parse()
		if err != nil {
			return it, fmt.Errorf("routes[%d]: %w", i, err)
		}
		it.Static.Routes = append(it.Static.Routes, link.Route{To: to, Via: via, Metric: r.Metric, Protocol: link.ProtoStatic})
	}
	return it, nil
}

// dnsFromConfig converts init.yaml's dns section.
func dnsFromConfig(c config.DNS) (dns.Config, error) {
	out := dns.Config{Search: c.Search, Options: c.Options}
	for _, s := range c.Nameservers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return out, fmt.Errorf("init.yaml network.dns.nameservers: %q: %w", s, err)
		}
		out.Nameservers = append(out.Nameservers, a)
	}
	return out, nil
}
