package hostnet

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
	"github.com/photon-init/photon-init/pkg/net/dhcp"
	"github.com/photon-init/photon-init/pkg/net/internal/nettest"
	"github.com/photon-init/photon-init/pkg/net/link"
)

var fastDHCP = dhcp.Timing{Timeout: 200 * time.Millisecond, Tries: 2, BackoffMin: 200 * time.Millisecond, BackoffMax: 400 * time.Millisecond, RetransmitMin: 300 * time.Millisecond}

// hostnames records SetHostname calls.
type hostnames struct {
	mu    sync.Mutex
	names []string
}

func (h *hostnames) set(n string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.names = append(h.names, n)
	return nil
}
func (h *hostnames) last() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.names) == 0 {
		return ""
	}
	return h.names[len(h.names)-1]
}

func startManager(t *testing.T, plan Plan, etc string) (*Manager, *hostnames, string) {
	t.Helper()
	dir := t.TempDir()
	h := &hostnames{}
	m := New(Options{
		Log:             nettest.Logger(t),
		Plan:            plan,
		DefaultHostname: "photon-default",
		SetHostname:     h.set,
		ResolvConf:      filepath.Join(dir, "run/photon/resolv.conf"),
		EtcResolvConf:   etc,
		DHCP:            fastDHCP,
	})
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Stop(ctx)
	})
	return m, h, m.ResolvConfPath()
}

func isOnline(m *Manager) bool {
	select {
	case <-m.Online():
		return true
	default:
		return false
	}
}

// TestManager: a link configured by DHCP from dnsmasq (lease applied:
// address with lifetime, default route, MTU, DNS, host name), a static
// link, a link that appears after Start, then Stop releasing the lease.
func TestManager(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET) {
		return
	}
	ns := nettest.NewNS(t)
	cli := nettest.Veth(t, "cli0", "srv0", ns, "10.99.0.1/24")
	srv := nettest.StartDnsmasq(t, ns, "srv0", "",
		"--dhcp-range=10.99.0.100,10.99.0.150,255.255.255.0,2m",
		"--dhcp-host="+cli.Attrs().HardwareAddr.String()+",10.99.0.77,leased-name",
		"--dhcp-option=option:router,10.99.0.1",
		"--dhcp-option=option:dns-server,10.99.0.53",
		"--dhcp-option=option:domain-search,example.test",
		"--dhcp-option=option:mtu,1400")
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "st0"}, PeerName: "p-st0"}); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(t.TempDir(), "resolv.conf")
	plan := Plan{
		Interfaces: []Interface{
			{Source: "test dhcp", Match: link.Match{Name: "cli0"}, DHCP: true},
			{Source: "test static", Match: link.Match{Name: "st*"}, Static: link.Static{
				MTU:       1300,
				Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("2001:db8::10/64")},
				Routes:    []link.Route{{To: netip.MustParsePrefix("198.51.100.0/24"), Via: netip.MustParseAddr("192.0.2.1"), Protocol: link.ProtoStatic}},
			}},
			{Source: "test late", Match: link.Match{Name: "late*"}, Static: link.Static{Addresses: []netip.Prefix{netip.MustParsePrefix("203.0.113.5/24")}}},
		},
		DNS: dnsConfig("1.1.1.1"),
	}
	m, names, resolv := startManager(t, plan, etc)

	// Static: applied before Start returned.
	st, _ := netlink.LinkByName("st0")
	if st.Attrs().MTU != 1300 || st.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("st0: mtu %d flags %v", st.Attrs().MTU, st.Attrs().Flags)
	}
	addrs, _ := link.Addresses(st, netlink.FAMILY_ALL)
	for _, p := range plan.Interfaces[1].Static.Addresses {
		if !slices.Contains(addrs, p) {
			t.Errorf("st0: %s missing from %v", p, addrs)
		}
	}
	if !hasRoute(t, st, "198.51.100.0/24", "192.0.2.1", 0) {
		t.Error("st0: static route missing")
	}
	if !isOnline(m) {
		t.Error("not online after a static configuration was applied")
	}
	if names.last() != "photon-default" {
		t.Errorf("host name %q before DHCP, want the default", names.last())
	}
	if dest, _ := os.Readlink(etc); dest != resolv {
		t.Errorf("%s → %q, want %q", etc, dest, resolv)
	}

	// A link that appears later.
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "late0"}, PeerName: "p-late0"}); err != nil {
		t.Fatal(err)
	}
	nettest.Eventually(t, 3*time.Second, "late0 not configured", func() bool {
		l, err := netlink.LinkByName("late0")
		if err != nil {
			return false
		}
		a, _ := link.Addresses(l, unix.AF_INET)
		return slices.Contains(a, netip.MustParsePrefix("203.0.113.5/24"))
	})

	// DHCP: the lease applied (the host name is the last thing set).
	want := netip.MustParsePrefix("10.99.0.77/24")
	nettest.Eventually(t, 10*time.Second, "the lease not applied to cli0", func() bool {
		return names.last() == "leased-name"
	})
	if a, _ := link.Addresses(cli, unix.AF_INET); !slices.Contains(a, want) {
		t.Errorf("cli0 addresses %v, want %s", a, want)
	}
	list, _ := netlink.AddrList(cli, unix.AF_INET)
	for _, a := range list {
		if a.IP.Equal(net.ParseIP("10.99.0.77")) && (a.ValidLft <= 0 || a.ValidLft > 120) {
			t.Errorf("leased address lifetime %d s, want the lease's (≤ 120)", a.ValidLft)
		}
	}
	if !hasRoute(t, cli, "0.0.0.0/0", "10.99.0.1", DHCPRouteMetric+cli.Attrs().Index) {
		t.Error("no default route from the lease")
	}
	if l, _ := netlink.LinkByName("cli0"); l.Attrs().MTU != 1400 {
		t.Errorf("cli0 mtu %d, want the lease's 1400", l.Attrs().MTU)
	}
	data, _ := os.ReadFile(resolv)
	for _, w := range []string{"nameserver 1.1.1.1\nnameserver 10.99.0.53\n", "search example.test\n"} {
		if !strings.Contains(string(data), w) {
			t.Errorf("resolv.conf lacks %q:\n%s", w, data)
		}
	}
	if m.Hostname() != "leased-name" {
		t.Errorf("Hostname() = %q, want the lease's", m.Hostname())
	}
	var leased bool
	for _, ls := range m.Links() {
		leased = leased || (ls.Name == "cli0" && ls.Lease != nil && ls.Lease.Address == want)
	}
	if !leased {
		t.Errorf("Links() = %+v", m.Links())
	}

	// Stop: released and removed.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	a, _ := link.Addresses(cli, unix.AF_INET)
	if slices.Contains(a, want) || hasRoute(t, cli, "0.0.0.0/0", "10.99.0.1", DHCPRouteMetric+cli.Attrs().Index) {
		t.Errorf("lease left on cli0 after Stop: %v", a)
	}
	data, _ = os.ReadFile(resolv)
	if strings.Contains(string(data), "10.99.0.53") {
		t.Errorf("resolv.conf keeps the lease's server after Stop:\n%s", data)
	}
	nettest.Eventually(t, 5*time.Second, "dnsmasq still holds the lease", func() bool {
		return len(nettest.Leases(srv.LeaseFile(), cli.Attrs().HardwareAddr)) == 0
	})
}

// TestOnlineWaitsForLease: with DHCP only, online waits for the lease,
// and Start does not wait for the server.
func TestOnlineWaitsForLease(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET) {
		return
	}
	ns := nettest.NewNS(t)
	nettest.Veth(t, "cli0", "srv0", ns, "10.99.0.1/24")
	nettest.RequireDnsmasq(t)
	start := time.Now()
	m, names, _ := startManager(t, Plan{Interfaces: []Interface{{Source: "test", Match: link.Match{Name: "cli*"}, DHCP: true}}}, "")
	if d := time.Since(start); d > time.Second {
		t.Errorf("Start took %v with no DHCP server", d)
	}
	time.Sleep(time.Second)
	if isOnline(m) {
		t.Fatal("online without a lease")
	}
	nettest.StartDnsmasq(t, ns, "srv0", "", "--dhcp-range=10.99.0.100,10.99.0.150,2m")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.WaitOnline(ctx); err != nil {
		t.Fatal(err)
	}
	if names.last() != "photon-default" {
		t.Errorf("host name %q, want the default (the lease has none)", names.last())
	}
}

// TestOffBringsUpLoopbackOnly: ip=off leaves every link alone.
func TestOffBringsUpLoopbackOnly(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET) {
		return
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth9"}, PeerName: "p-eth9"}); err != nil {
		t.Fatal(err)
	}
	plan, _ := NewPlan(configNetwork(), []string{"off"})
	m, _, _ := startManager(t, plan, "")
	lo, _ := netlink.LinkByName("lo")
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Error("lo is not up")
	}
	a, _ := link.Addresses(lo, unix.AF_INET)
	if !slices.Contains(a, netip.MustParsePrefix("127.0.0.1/8")) {
		t.Errorf("lo addresses %v", a)
	}
	eth, _ := netlink.LinkByName("eth9")
	if eth.Attrs().Flags&net.FlagUp != 0 {
		t.Error("eth9 brought up with ip=off")
	}
	if len(m.Links()) != 0 || isOnline(m) {
		t.Errorf("links %v online %v", m.Links(), isOnline(m))
	}
}

func hasRoute(t *testing.T, l netlink.Link, to, via string, metric int) bool {
	t.Helper()
	routes, err := link.Routes(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.To == netip.MustParsePrefix(to) && r.Via == netip.MustParseAddr(via) && r.Metric == metric {
			return true
		}
	}
	return false
}

// TestHostnameFromLateLink: with no identity on the machine and no
// ethernet link at Start (its driver still loading), the default host name
// is "photon" until the first ethernet link appears; then it derives from
// that link's MAC address, once.
func TestHostnameFromLateLink(t *testing.T) {
	h := &hostnames{}
	m := New(Options{
		Log:          nettest.Logger(t),
		IdentityRoot: t.TempDir(), // no machine-id, no DMI product UUID
		SetHostname:  h.set,
	})
	m.initHostname(nil) // what Start does with the links present
	nic := func(index int, name string, mac net.HardwareAddr) netlink.Link {
		return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index, Name: name, HardwareAddr: mac, EncapType: "ether"}}
	}
	ctx := context.Background()
	m.linkAdded(ctx, &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: 2, Name: "veth0", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}, EncapType: "ether"}})
	m.linkAdded(ctx, nic(3, "eth0", net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}))
	m.linkAdded(ctx, nic(4, "eth1", net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc}))
	want := []string{HostnamePrefix, HostnamePrefix + "-00123456"}
	if !slices.Equal(h.names, want) {
		t.Errorf("host names set = %q, want %q (a veth does not name the machine; eth0 does, once)", h.names, want)
	}
	if got := m.Hostname(); got != want[1] {
		t.Errorf("Hostname() = %q, want %q", got, want[1])
	}
}
