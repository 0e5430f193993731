package shell

import (
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
)

// TestIPKernel runs ip against the kernel, in a network namespace of the
// test's own with lo up and a dummy link (or, without the dummy module, an
// address on lo).
func TestIPKernel(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET) {
		return
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	dev := "dummy0"
	link := netlink.Link(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: dev, MTU: 1400}})
	if err := netlink.LinkAdd(link); err != nil {
		t.Logf("no dummy link (%v): using lo", err)
		dev, link = "lo", lo
	} else if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	ip, n, _ := net.ParseCIDR("10.9.8.7/24")
	n.IP = ip
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: n}); err != nil {
		t.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR("10.99.0.0/16")
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_STATIC}); err != nil {
		t.Fatal(err)
	}
	addr := runLines(t, Options{}, "ip -4 addr")
	route := runLines(t, Options{}, "ip route")
	for _, want := range []string{
		"1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 state UNKNOWN",
		"    inet 127.0.0.1/8 scope host lo",
		"    inet 10.9.8.7/24 brd 10.9.8.255 scope global " + dev,
	} {
		if !strings.Contains(addr+"\n", want+"\n") {
			t.Errorf("ip -4 addr lacks %q:\n%s", want, addr)
		}
	}
	if want := "10.99.0.0/16 dev " + dev + " proto static scope link"; !strings.Contains(route, want) {
		t.Errorf("ip route lacks %q:\n%s", want, route)
	}
	if strings.Contains(addr, "inet6") {
		t.Errorf("ip -4 shows IPv6 addresses:\n%s", addr)
	}
}
