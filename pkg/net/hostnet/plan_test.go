package hostnet

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/net/dns"
	"github.com/photon-init/photon-init/pkg/net/link"
)

func TestNewPlan(t *testing.T) {
	yes, no := true, false
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	def := netip.MustParsePrefix("0.0.0.0/0")
	cfg := config.Network{
		Interfaces: []config.Interface{
			{Name: "eth1", Addresses: []string{"192.168.1.10/24", "fd00::10/64"}, Gateway: "192.168.1.1", Gateway6: "fd00::1", MTU: 9000, AcceptRA: &no,
				Routes: []config.Route{{To: "10.1.0.0/16", Via: "192.168.1.254", Metric: 5}}},
			{MAC: "52:54:00:12:34:56", DHCP: &yes},
		},
		DNS: config.DNS{Nameservers: []string{"1.1.1.1"}, Search: []string{"example.com"}, Options: []string{"edns0"}},
	}
	eth1 := Interface{Source: "init.yaml network.interfaces[0]", Match: link.Match{Name: "eth1"}, Static: link.Static{
		MTU: 9000, AcceptRA: &no,
		Addresses: []netip.Prefix{netip.MustParsePrefix("192.168.1.10/24"), netip.MustParsePrefix("fd00::10/64")},
		Routes: []link.Route{
			{To: def, Via: netip.MustParseAddr("192.168.1.1"), Protocol: link.ProtoStatic},
			{To: netip.MustParsePrefix("::/0"), Via: netip.MustParseAddr("fd00::1"), Protocol: link.ProtoStatic},
			{To: netip.MustParsePrefix("10.1.0.0/16"), Via: netip.MustParseAddr("192.168.1.254"), Metric: 5, Protocol: link.ProtoStatic},
		}}}
	byMAC := Interface{Source: "init.yaml network.interfaces[1]", Match: link.Match{MAC: mac}, DHCP: true}
	staticDNS := dns.Config{Nameservers: []netip.Addr{netip.MustParseAddr("1.1.1.1")}, Search: []string{"example.com"}, Options: []string{"edns0"}}
	tests := []struct {
		name    string
		cfg     config.Network
		ip      []string
		want    Plan
		wantErr string
	}{
		{name: "nothing: DHCP on ethernet", want: Plan{Interfaces: []Interface{DefaultInterface()}}},
		{name: "init.yaml", cfg: cfg, want: Plan{Interfaces: []Interface{eth1, byMAC}, DNS: staticDNS}},
		{name: "ip=dhcp before init.yaml", cfg: cfg, ip: []string{"dhcp"}, want: Plan{
			Interfaces: []Interface{{Source: "ip=dhcp", Match: link.Match{Ethernet: true}, DHCP: true}, eth1, byMAC}, DNS: staticDNS}},
		{name: "ip= static", ip: []string{"10.0.2.15::10.0.2.2:255.255.255.0:guest:eth0:off:10.0.2.3"}, want: Plan{
			Hostname: "guest",
			DNS:      dns.Config{Nameservers: []netip.Addr{netip.MustParseAddr("10.0.2.3")}},
			Interfaces: []Interface{{Source: "ip=10.0.2.15::10.0.2.2:255.255.255.0:guest:eth0:off:10.0.2.3", Match: link.Match{Name: "eth0"},
				Static: link.Static{Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.2.15/24")},
					Routes: []link.Route{{To: def, Via: netip.MustParseAddr("10.0.2.2"), Protocol: link.ProtoStatic}}}}}}},
		{name: "ip= static without device takes the first ethernet link", ip: []string{"10.0.2.15:::255.255.255.0"}, want: Plan{
			Interfaces: []Interface{{Source: "ip=10.0.2.15:::255.255.255.0", Match: link.Match{Ethernet: true}, First: true,
				Static: link.Static{Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.2.15/24")}}}}}},
		{name: "ip=off wins over init.yaml", cfg: cfg, ip: []string{"off"}, want: Plan{Off: true, DNS: staticDNS}},
		{name: "ip=eth0:off", ip: []string{"eth0:off"}, want: Plan{Interfaces: []Interface{{Source: "ip=eth0:off", Match: link.Match{Name: "eth0"}, Off: true}}}},
		{name: "bad ip= is reported, default stays", ip: []string{"dhcpp"}, want: Plan{Interfaces: []Interface{DefaultInterface()}}, wantErr: `ip=dhcpp: autoconf "dhcpp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := NewPlan(tt.cfg, tt.ip)
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			if (tt.wantErr == "") != (len(errs) == 0) || (tt.wantErr != "" && !strings.Contains(strings.Join(msgs, "\n"), tt.wantErr)) {
				t.Errorf("errors %q, want %q", msgs, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("plan\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestStableHostname(t *testing.T) {
	eth := func(idx int, mac string) netlink.Link {
		hw, _ := net.ParseMAC(mac)
		return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: idx, Name: "eth", HardwareAddr: hw, EncapType: "ether"}}
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: 1, HardwareAddr: net.HardwareAddr{1, 2, 3, 4, 5, 6}, EncapType: "ether"}}
	tests := []struct {
		name      string
		machineID string
		uuid      string
		links     []netlink.Link
		want      string
	}{
		{name: "machine-id", machineID: "0123456789abcdef0123456789abcdef\n", uuid: "AAAAAAAA-0000-0000-0000-000000000000", want: "photon-01234567"},
		{name: "bad machine-id, dmi uuid", machineID: "uninitialized\n", uuid: "4C4C4544-0042-3510-8052-B2C04F4E4B31\n", want: "photon-4c4c4544"},
		{name: "zero uuid, first NIC", uuid: "00000000-0000-0000-0000-000000000000", links: []netlink.Link{veth, eth(3, "52:54:00:aa:bb:cc"), eth(2, "52:54:00:12:34:56")}, want: "photon-00123456"},
		{name: "all-ones uuid", uuid: "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", links: []netlink.Link{eth(2, "02:00:0a:0b:0c:0d")}, want: "photon-0a0b0c0d"},
		{name: "nothing", links: []netlink.Link{veth}, want: "photon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.machineID != "" {
				os.MkdirAll(filepath.Join(root, "etc"), 0o755)
				os.WriteFile(filepath.Join(root, "etc/machine-id"), []byte(tt.machineID), 0o644)
			}
			if tt.uuid != "" {
				os.MkdirAll(filepath.Join(root, "sys/class/dmi/id"), 0o755)
				os.WriteFile(filepath.Join(root, "sys/class/dmi/id/product_uuid"), []byte(tt.uuid), 0o644)
			}
			if got := StableHostname(root, tt.links); got != tt.want {
				t.Errorf("StableHostname = %q, want %q", got, tt.want)
			}
			if !config.ValidHostname(tt.want) {
				t.Errorf("%q is not a valid host name", tt.want)
			}
		})
	}
}

func dnsConfig(servers ...string) dns.Config {
	var c dns.Config
	for _, s := range servers {
		c.Nameservers = append(c.Nameservers, netip.MustParseAddr(s))
	}
	return c
}

func configNetwork() config.Network {
	return config.Network{Interfaces: []config.Interface{{Name: "eth*"}}}
}
