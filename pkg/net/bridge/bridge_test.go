package bridge

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
	"github.com/photon-init/photon-init/pkg/net/link"
	"github.com/photon-init/photon-init/pkg/net/netnsdir"
)

var testCfg = Config{
	Name:    "phtest0",
	Subnet:  netip.MustParsePrefix("10.88.0.0/16"),
	Gateway: netip.MustParseAddr("10.88.0.1"),
}

func sysctl(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestEnsureAndVeth(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNS|unix.CLONE_NEWNET) {
		return
	}
	nstest.Private(t)
	if err := link.LoopbackUp(); err != nil {
		t.Fatal(err)
	}
	br, err := Ensure(testCfg)
	if err != nil {
		t.Fatal(err)
	}
	// A stray address (an earlier subnet) goes; ensuring twice is fine.
	netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: net.IP{192, 168, 99, 1}, Mask: net.CIDRMask(24, 32)}})
	if br, err = Ensure(testCfg); err != nil {
		t.Fatal(err)
	}
	addrs, _ := link.Addresses(br, unix.AF_INET)
	if len(addrs) != 1 || addrs[0].String() != "10.88.0.1/16" {
		t.Errorf("bridge addresses %v", addrs)
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		t.Error("bridge down")
	}
	if v := sysctl(t, "/proc/sys/net/ipv4/ip_forward"); v != "1" {
		t.Errorf("ip_forward %s", v)
	}
	if v := sysctl(t, "/proc/sys/net/ipv4/conf/phtest0/route_localnet"); v != "1" {
		t.Errorf("route_localnet %s", v)
	}

	dir, err := netnsdir.Open(filepath.Join(t.TempDir(), "netns"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Unmount() })
	nsPath, err := dir.Create("web")
	if err != nil {
		t.Fatal(err)
	}
	cfg := VethConfig{
		Name: "phv-web", Alias: "photon:web", Netns: nsPath,
		Address: netip.MustParsePrefix("10.88.0.2/16"), Gateway: testCfg.Gateway,
	}
	if err := AddVeth(br, cfg); err != nil {
		t.Fatal(err)
	}
	host, err := netlink.LinkByName("phv-web")
	if err != nil {
		t.Fatal(err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index || host.Attrs().Alias != "photon:web" {
		t.Errorf("host end %+v", host.Attrs())
	}
	// Inside: lo and eth0 up, the address, the default route.
	ns, _ := netns.GetFromPath(nsPath)
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, name := range []string{"lo", ContainerLink} {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s down in the container", name)
		}
	}
	eth, _ := h.LinkByName(ContainerLink)
	// The MAC follows the address (02:50 and 10.88.0.2), so a container
	// restarted with its address is reached at once.
	if got := eth.Attrs().HardwareAddr.String(); got != "02:50:0a:58:00:02" {
		t.Errorf("container MAC %s, want 02:50:0a:58:00:02", got)
	}
	as, _ := h.AddrList(eth, unix.AF_INET)
	if len(as) != 1 || as[0].IPNet.String() != "10.88.0.2/16" {
		t.Errorf("container addresses %v", as)
	}
	rs, _ := h.RouteList(eth, unix.AF_INET)
	var def bool
	for _, r := range rs {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == "10.88.0.1" {
			def = true
		}
	}
	if !def {
		t.Errorf("no default route in the container: %v", rs)
	}
	// The host reaches the container through the bridge.
	if vs, err := Veths("photon:"); err != nil || len(vs) != 1 || vs[0].Name != "phv-web" {
		t.Errorf("Veths = %v %v", vs, err)
	}
	// Adding again replaces the old pair (a stale one from a crash).
	cfg.Netns = mustCreate(t, dir, "web")
	if err := AddVeth(br, cfg); err != nil {
		t.Fatalf("re-adding: %v", err)
	}
	if err := DelVeth("phv-web"); err != nil {
		t.Fatal(err)
	}
	if err := DelVeth("phv-web"); err != nil {
		t.Errorf("deleting a missing veth: %v", err)
	}
	if vs, _ := Veths("photon:"); len(vs) != 0 {
		t.Errorf("veths left: %v", vs)
	}
	// A failed AddVeth leaves nothing: a namespace that does not exist.
	cfg.Netns = filepath.Join(t.TempDir(), "nothing")
	if err := AddVeth(br, cfg); err == nil {
		t.Error("AddVeth into a missing namespace succeeded")
	}
	if _, err := netlink.LinkByName("phv-web"); err == nil {
		t.Error("a failed AddVeth left its link")
	}
	if err := DelVeth("lo"); err == nil {
		t.Error("DelVeth deleted something that is not a veth")
	}
	if err := Delete("phtest0"); err != nil {
		t.Fatal(err)
	}
}

func mustCreate(t *testing.T, d *netnsdir.Dir, name string) string {
	t.Helper()
	p, err := d.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOverlap(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET) {
		return
	}
	// (Veths: the test kernel may lack dummy links.)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink0"}, PeerName: "uplink0p"}); err != nil {
		t.Fatal(err)
	}
	l, _ := netlink.LinkByName("uplink0")
	if err := link.Apply(l, link.Static{Addresses: []netip.Prefix{netip.MustParsePrefix("10.88.5.7/24")}}); err != nil {
		t.Fatal(err)
	}
	_, err := Ensure(testCfg)
	if err == nil || !strings.Contains(err.Error(), "subnet 10.88.0.0/16 overlaps the route to 10.88.5.0/24 on uplink0") {
		t.Fatalf("overlap error %v", err)
	}
	if _, err := netlink.LinkByName("phtest0"); err == nil {
		t.Error("the bridge was created despite the overlap")
	}
	other := testCfg
	other.Subnet, other.Gateway = netip.MustParsePrefix("10.89.0.0/16"), netip.MustParseAddr("10.89.0.1")
	if _, err := Ensure(other); err != nil {
		t.Errorf("a subnet beside the route: %v", err)
	}
	// A link of the bridge's name that is no bridge.
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "notabridge"}, PeerName: "notabridgep"}); err != nil {
		t.Fatal(err)
	}
	other.Name = "notabridge"
	other.Subnet, other.Gateway = netip.MustParsePrefix("10.90.0.0/16"), netip.MustParseAddr("10.90.0.1")
	if _, err := Ensure(other); err == nil || !strings.Contains(err.Error(), "is a veth, not a bridge") {
		t.Errorf("a dummy taken for a bridge: %v", err)
	}
}
