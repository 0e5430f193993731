package containernet

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
	"github.com/photon-init/photon-init/pkg/net/bridge"
	"github.com/photon-init/photon-init/pkg/net/internal/nettest"
	"github.com/photon-init/photon-init/pkg/net/link"
	"github.com/photon-init/photon-init/pkg/net/nat"
	"github.com/photon-init/photon-init/pkg/net/netnsdir"
	"github.com/photon-init/photon-init/pkg/net/portmap"
)

// env runs the test in its own network and mount namespaces and returns
// Options under a temporary directory.
func env(t *testing.T) (Options, bool) {
	t.Helper()
	if !nstest.Run(t, unix.CLONE_NEWNET|unix.CLONE_NEWNS) {
		return Options{}, false
	}
	nstest.Private(t)
	if err := link.LoopbackUp(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	o := Options{NetnsDir: filepath.Join(dir, "netns"), IPAMDir: filepath.Join(dir, "ipam"), Log: nettest.Logger(t)}
	t.Cleanup(func() {
		if d, err := netnsdir.Open(o.NetnsDir); err == nil {
			d.Unmount()
		}
	})
	return o, true
}

func newNetwork(t *testing.T, o Options) *Network {
	t.Helper()
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// port is a tcp port "HOST:CTR" or "IP:HOST:CTR".
func port(t *testing.T, spec string) portmap.Port {
	t.Helper()
	f := strings.Split(spec, ":")
	ip := ""
	if len(f) == 3 {
		ip, f = f[0], f[1:]
	}
	hp, err1 := strconv.Atoi(f[0])
	cp, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("bad port %q", spec)
	}
	p, err := portmap.Parse(ip, uint16(hp), uint16(cp), "tcp")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// leftovers lists what a detached network must not have: veths, namespace
// files, port rules.
func leftovers(t *testing.T, n *Network) []string {
	t.Helper()
	var out []string
	vs, _ := bridge.Veths(vethAlias)
	for _, v := range vs {
		out = append(out, "veth "+v.Name)
	}
	files, _ := n.ns.List()
	for _, f := range files {
		out = append(out, "netns "+f)
	}
	owners, err := n.nat.Owners()
	if err != nil {
		t.Fatal(err)
	}
	for o, c := range owners {
		if c > 0 {
			out = append(out, "rules of "+o)
		}
	}
	return out
}

func TestAttachDetach(t *testing.T) {
	o, child := env(t)
	if !child {
		return
	}
	n := newNetwork(t, o)
	if _, err := netlink.LinkByName(DefaultBridge); err == nil {
		t.Fatal("the bridge exists before the first bridged container")
	}
	web, err := n.Attach("web", []portmap.Port{port(t, "8080:80")})
	if err != nil {
		t.Fatal(err)
	}
	if web.Addr.String() != "10.88.0.2" || web.Gateway.String() != "10.88.0.1" || !web.Bridged || web.Netns != filepath.Join(o.NetnsDir, "web") {
		t.Errorf("web endpoint %+v", web)
	}
	db, err := n.Attach("db", nil)
	if err != nil {
		t.Fatal(err)
	}
	if db.Addr.String() != "10.88.0.3" {
		t.Errorf("db at %s", db.Addr)
	}
	// Another container asking for web's port fails alone, leaving
	// nothing but its address.
	_, err = n.Attach("thief", []portmap.Port{port(t, "127.0.0.1:8080:8080")})
	if err == nil || !strings.Contains(err.Error(), "network of thief: port 127.0.0.1:8080:8080/tcp: host port 8080/tcp is already published by web") {
		t.Fatalf("port clash: %v", err)
	}
	if _, ok := n.Endpoint("thief"); ok {
		t.Error("a failed attach left an endpoint")
	}
	if _, err := os.Stat(filepath.Join(o.NetnsDir, "thief")); !os.IsNotExist(err) {
		t.Errorf("a failed attach left its namespace: %v", err)
	}
	if _, err := n.Attach("web", nil); err == nil {
		t.Error("web attached twice")
	}
	if eps := n.Endpoints(); len(eps) != 2 || eps[0].Name != "db" || eps[1].Name != "web" {
		t.Errorf("endpoints %v", eps)
	}
	none, err := n.Isolated("loner")
	if err != nil {
		t.Fatal(err)
	}
	if none.Bridged || none.Addr.IsValid() {
		t.Errorf("isolated endpoint %+v", none)
	}
	if owners, _ := n.nat.Owners(); owners["web"] != 1 {
		t.Errorf("rules %v", owners)
	}

	// Restart: web keeps its address, and its port.
	if err := n.Detach("web"); err != nil {
		t.Fatal(err)
	}
	if web2, err := n.Attach("web", []portmap.Port{port(t, "8080:80")}); err != nil || web2.Addr != web.Addr {
		t.Errorf("re-attached web at %v (%v), had %s", web2, err, web.Addr)
	}
	for _, name := range []string{"web", "db", "loner", "never-attached"} {
		if err := n.Detach(name); err != nil {
			t.Error(err)
		}
	}
	if l := leftovers(t, n); len(l) != 0 {
		t.Errorf("left after Detach: %v", l)
	}
	// Released, a name gets a new address; kept ones stay.
	if err := n.Release("web"); err != nil {
		t.Fatal(err)
	}
	addrs, _ := n.Addresses()
	if _, ok := addrs["web"]; ok || addrs["db"] != db.Addr {
		t.Errorf("addresses after release %v", addrs)
	}
}

// TestCleanupAfterAnEarlierRun: a Network that "crashed" with containers
// attached is swept by the next one, which then works.
func TestCleanupAfterAnEarlierRun(t *testing.T) {
	o, child := env(t)
	if !child {
		return
	}
	old := newNetwork(t, o)
	for _, name := range []string{"a", "b"} {
		if _, err := old.Attach(name, []portmap.Port{port(t, map[string]string{"a": "9001:80", "b": "9002:80"}[name])}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := old.Isolated("c"); err != nil {
		t.Fatal(err)
	}
	// A veth of an unrelated program stays.
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "other0"}, PeerName: "other1"}); err != nil {
		t.Fatal(err)
	}

	n := newNetwork(t, o)
	if err := n.Cleanup(func(name string) bool { return name == "b" }); err != nil {
		t.Fatal(err)
	}
	if ok, _ := nat.Exists(""); ok {
		t.Error("the nftables table of the earlier run is still there")
	}
	if _, err := netlink.LinkByName(VethName("a")); err == nil {
		t.Error("a's veth is still there")
	}
	if _, err := netlink.LinkByName(VethName("b")); err != nil {
		t.Error("b's veth (kept) was removed")
	}
	if _, err := netlink.LinkByName("other0"); err != nil {
		t.Error("an unrelated veth was removed")
	}
	files, _ := n.ns.List()
	if len(files) != 1 || files[0] != "b" {
		t.Errorf("namespace files after cleanup: %v", files)
	}
	if err := n.Cleanup(func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	// The new run works, and a gets its old address back.
	a, err := n.Attach("a", []portmap.Port{port(t, "9001:80")})
	if err != nil {
		t.Fatal(err)
	}
	if a.Addr.String() != "10.88.0.2" {
		t.Errorf("a at %s after the restart", a.Addr)
	}
	if owners, _ := n.nat.Owners(); len(owners) != 1 || owners["a"] != 1 {
		t.Errorf("rules %v", owners)
	}
	if err := n.Detach("a"); err != nil {
		t.Fatal(err)
	}
	if l := leftovers(t, n); len(l) != 0 {
		t.Errorf("left: %v", l)
	}
}

func TestSubnetOverlapsARoute(t *testing.T) {
	o, child := env(t)
	if !child {
		return
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink0"}, PeerName: "uplink1"}); err != nil {
		t.Fatal(err)
	}
	up, _ := netlink.LinkByName("uplink0")
	if err := link.Apply(up, link.Static{Addresses: []netip.Prefix{netip.MustParsePrefix("10.88.200.1/24")}}); err != nil {
		t.Fatal(err)
	}
	n := newNetwork(t, o)
	_, err := n.Attach("web", nil)
	if err == nil || !strings.Contains(err.Error(), "network of web: bridge photon0: subnet 10.88.0.0/16 overlaps the route to 10.88.200.0/24 on uplink0") {
		t.Fatalf("overlap: %v", err)
	}
	// Isolated containers do not need the bridge.
	if _, err := n.Isolated("alone"); err != nil {
		t.Errorf("network_mode none with a broken bridge: %v", err)
	}
	// Another subnet works.
	o.Subnet = netip.MustParsePrefix("172.30.0.0/24")
	o.Bridge = "photon1"
	n2 := newNetwork(t, o)
	ep, err := n2.Attach("web", nil)
	if err != nil || ep.Addr.String() != "172.30.0.2" {
		t.Fatalf("attach in 172.30.0.0/24: %+v %v", ep, err)
	}
	n2.Detach("web")
	n.Detach("alone")
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{
		{},
		{NetnsDir: "/x"},
		{NetnsDir: "/x", IPAMDir: "/y", Subnet: netip.MustParsePrefix("10.0.0.1/24")},
		{NetnsDir: "/x", IPAMDir: "/y", Subnet: netip.MustParsePrefix("fd00::/64")},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	if VethName("web") == VethName("db") || len(VethName("a-very-long-container-name")) != 14 {
		t.Errorf("veth names %s %s", VethName("web"), VethName("a-very-long-container-name"))
	}
}
