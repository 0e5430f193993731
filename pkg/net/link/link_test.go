package link

import (
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
)

func TestMatch(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	eth := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth0", HardwareAddr: mac, EncapType: "ether"}}
	enp := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "enp0s3", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}, EncapType: "ether"}}
	lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo", EncapType: "loopback", Flags: net.FlagLoopback, HardwareAddr: make(net.HardwareAddr, 6)}}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0", HardwareAddr: mac, EncapType: "ether"}}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "photon0", HardwareAddr: mac, EncapType: "ether"}}
	tests := []struct {
		name  string
		m     Match
		links map[netlink.Link]bool
	}{
		{name: "any", m: Match{}, links: map[netlink.Link]bool{eth: true, lo: true, veth: true}},
		{name: "exact", m: Match{Name: "eth0"}, links: map[netlink.Link]bool{eth: true, enp: false, veth: false}},
		{name: "glob", m: Match{Name: "e*"}, links: map[netlink.Link]bool{eth: true, enp: true, veth: false, lo: false}},
		{name: "mac", m: Match{MAC: mac}, links: map[netlink.Link]bool{eth: true, enp: false, veth: true}},
		{name: "name and mac", m: Match{Name: "eth*", MAC: mac}, links: map[netlink.Link]bool{eth: true, veth: false}},
		{name: "ethernet only", m: Match{Ethernet: true}, links: map[netlink.Link]bool{eth: true, enp: true, lo: false, veth: false, br: false}},
		{name: "bad glob", m: Match{Name: "e["}, links: map[netlink.Link]bool{eth: false}},
	}
	for _, tt := range tests {
		for l, want := range tt.links {
			if got := tt.m.Matches(l); got != want {
				t.Errorf("%s: Match(%v).Matches(%s) = %v, want %v", tt.name, tt.m, l.Attrs().Name, got, want)
			}
		}
	}
	if s := (Match{Name: "en*", Ethernet: true}).String(); s != "name en* ethernet" {
		t.Errorf("String() = %q", s)
	}
}

// TestLoopbackUp: lo comes up with 127.0.0.1/8 in a fresh namespace (the
// kernel adds it), and an up lo that lost the address gets it back.
func TestLoopbackUp(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET) {
		return
	}
	want := netip.MustParsePrefix("127.0.0.1/8")
	hasAddr := func() bool {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := Addresses(lo, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		return slices.Contains(addrs, want)
	}
	for _, step := range []string{"fresh namespace", "address lost"} {
		if step == "address lost" {
			lo, _ := netlink.LinkByName("lo")
			a, _ := netlink.ParseAddr(want.String())
			if err := netlink.AddrDel(lo, a); err != nil {
				t.Fatal(err)
			}
			if hasAddr() {
				t.Fatal("127.0.0.1/8 still there after AddrDel")
			}
		}
		if err := LoopbackUp(); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		lo, _ := netlink.LinkByName("lo")
		if lo.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s: lo is not up", step)
		}
		if !hasAddr() {
			t.Errorf("%s: lo lacks %s", step, want)
		}
	}
}

// TestStaticApplied configures a veth in a network namespace of the test's
// own and reads everything back.
func TestStaticApplied(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET) {
		return
	}
	if err := LoopbackUp(); err != nil {
		t.Fatal(err)
	}
	lo, _ := netlink.LinkByName("lo")
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Error("lo is not up")
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "st0"}, PeerName: "st1"}); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName("st0")
	if err != nil {
		t.Fatal(err)
	}
	if IsEthernet(l) {
		t.Error("a veth counts as ethernet")
	}
	off := false
	s := Static{
		MTU:       1400,
		Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("2001:db8::10/64")},
		Routes: []Route{
			{To: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("192.0.2.1"), Protocol: ProtoStatic},
			{To: netip.MustParsePrefix("198.51.100.0/24"), Via: netip.MustParseAddr("192.0.2.254"), Metric: 50, Protocol: ProtoStatic},
			{To: netip.MustParsePrefix("203.0.113.0/24"), Via: netip.MustParseAddr("10.9.9.9"), Protocol: ProtoStatic}, // onlink
			{To: netip.MustParsePrefix("::/0"), Via: netip.MustParseAddr("2001:db8::1"), Metric: 1024, Protocol: ProtoStatic},
			{To: netip.MustParsePrefix("100.64.0.0/10"), Protocol: ProtoStatic},
		},
		AcceptRA: &off,
	}
	if err := Apply(l, s); err != nil {
		t.Fatal(err)
	}
	if err := Apply(l, s); err != nil {
		t.Fatalf("applying again: %v", err)
	}
	l, _ = netlink.LinkByName("st0")
	if l.Attrs().MTU != 1400 || l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("mtu %d flags %v", l.Attrs().MTU, l.Attrs().Flags)
	}
	addrs, err := Addresses(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Addresses {
		if !slices.Contains(addrs, p) {
			t.Errorf("address %s missing from %v", p, addrs)
		}
	}
	routes, err := Routes(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range routes {
		got = append(got, r.String())
	}
	for _, r := range s.Routes {
		found := false
		for _, g := range routes {
			if g.To == r.To && g.Via == r.Via && g.Metric == r.Metric && g.Protocol == ProtoStatic {
				found = true
			}
		}
		if !found {
			t.Errorf("route %s missing from %v", r, got)
		}
	}
	if ra, _ := os.ReadFile("/proc/sys/net/ipv6/conf/st0/accept_ra"); strings.TrimSpace(string(ra)) != "0" {
		t.Errorf("accept_ra = %q", ra)
	}
	if err := SetAcceptRA("st0", true); err != nil {
		t.Fatal(err)
	}
	if ra, _ := os.ReadFile("/proc/sys/net/ipv6/conf/st0/accept_ra"); strings.TrimSpace(string(ra)) != "2" {
		t.Errorf("accept_ra = %q after turning it on", ra)
	}

	if err := Unapply(l, s); err != nil {
		t.Fatal(err)
	}
	if err := Unapply(l, s); err != nil {
		t.Fatalf("unapplying again: %v", err)
	}
	addrs, _ = Addresses(l, unix.AF_INET)
	routes, _ = Routes(l, unix.AF_INET)
	if len(addrs) != 0 || len(routes) != 0 {
		t.Errorf("left after Unapply: %v %v", addrs, routes)
	}
}

func TestSetAcceptRAUnknownLink(t *testing.T) {
	err := SetAcceptRA("no-such-link0", true)
	if err == nil || !strings.Contains(err.Error(), "net.ipv6.conf.no-such-link0.accept_ra") {
		t.Errorf("err = %v", err)
	}
}
