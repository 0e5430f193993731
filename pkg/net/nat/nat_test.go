package nat

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
	"github.com/photon-init/photon-init/pkg/net/bridge"
	"github.com/photon-init/photon-init/pkg/net/internal/nettest"
	"github.com/photon-init/photon-init/pkg/net/link"
)

// serve answers every connection on ln with "from REMOTE\n".
func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "from %s\n", c.RemoteAddr().(*net.TCPAddr).IP)
		c.Close()
	}
}

// listen starts serve in ns (nil: the test's own namespace) on addr.
func listen(t *testing.T, ns *nettest.NS, addr string) {
	t.Helper()
	var ln net.Listener
	var err error
	if ns == nil {
		ln, err = net.Listen("tcp4", addr)
	} else {
		ns.Do(func() { ln, err = net.Listen("tcp4", addr) })
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ln)
}

// dial connects from ns (nil: the test's own) and returns the answer's
// source address, or an error.
func dial(ns *nettest.NS, addr string) (string, error) {
	var c net.Conn
	var err error
	d := net.Dialer{Timeout: 2 * time.Second}
	if ns == nil {
		c, err = d.Dial("tcp4", addr)
	} else {
		ns.Do(func() { c, err = d.Dial("tcp4", addr) })
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimPrefix(strings.TrimSpace(line), "from "), nil
}

func expect(t *testing.T, what string, ns *nettest.NS, addr, wantFrom string) {
	t.Helper()
	got, err := dial(ns, addr)
	if err != nil {
		t.Errorf("%s: dial %s: %v", what, addr, err)
		return
	}
	if got != wantFrom {
		t.Errorf("%s: the server saw %s, want %s", what, got, wantFrom)
	}
}

func expectFail(t *testing.T, what string, ns *nettest.NS, addr string) {
	t.Helper()
	if got, err := dial(ns, addr); err == nil {
		t.Errorf("%s: dial %s reached a server (saw %s)", what, addr, got)
	}
}

// TestNAT builds, in the test's own network namespace (the machine): a
// bridge with two container namespaces on it, and an uplink to an
// "outside" namespace (another host). It checks outbound masquerade,
// published ports from outside, from the machine (its address and
// 127.0.0.1) and from a container (hairpin), that ports of other hosts are
// not taken, and that DelDNAT and Delete leave nothing.
func TestNAT(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET) {
		return
	}
	if err := link.LoopbackUp(); err != nil {
		t.Fatal(err)
	}
	subnet := netip.MustParsePrefix("10.88.0.0/16")
	gw := netip.MustParseAddr("10.88.0.1")
	br, err := bridge.Ensure(bridge.Config{Name: "photon0", Subnet: subnet, Gateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	tab, err := New(Config{Bridge: "photon0", Subnet: subnet})
	if err != nil {
		t.Fatal(err)
	}
	// A leftover of an "earlier run" is swept by Setup.
	if err := tab.Setup(); err != nil {
		t.Fatal(err)
	}
	tab.AddDNAT("stale", []DNAT{{HostPort: 1, Protocol: "tcp", To: netip.MustParseAddrPort("10.88.9.9:1")}})
	if err := tab.Setup(); err != nil {
		t.Fatal(err)
	}
	if o, err := tab.Owners(); err != nil || len(o) != 0 {
		t.Fatalf("after Setup: owners %v %v", o, err)
	}

	ctrs := map[string]*nettest.NS{}
	for i, name := range []string{"a", "b"} {
		ns := nettest.NewNS(t)
		ctrs[name] = ns
		err := bridge.AddVeth(br, bridge.VethConfig{
			Name: "phv-" + name, Netns: fmt.Sprintf("/proc/self/fd/%d", ns.Fd()),
			Address: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 88, 0, byte(2 + i)}), 16), Gateway: gw,
		})
		if err != nil {
			t.Fatal(err)
		}
		listen(t, ns, ":80")
	}
	outside := nettest.NewNS(t)
	nettest.Veth(t, "uplink0", "eth0", outside, "192.0.2.1/24")
	up, _ := netlink.LinkByName("uplink0")
	if err := link.AddAddress(up, netip.MustParsePrefix("192.0.2.10/24"), 0); err != nil {
		t.Fatal(err)
	}
	listen(t, outside, "192.0.2.1:9000")
	listen(t, outside, "192.0.2.1:8080") // a port of another host

	// Containers reach each other directly, and the outside through NAT.
	expect(t, "container to container", ctrs["a"], "10.88.0.3:80", "10.88.0.2")
	expect(t, "container to the outside (masquerade)", ctrs["a"], "192.0.2.1:9000", "192.0.2.10")

	ds := []DNAT{{HostPort: 8080, Protocol: "tcp", To: netip.MustParseAddrPort("10.88.0.3:80")}}
	if err := tab.AddDNAT("b", ds); err != nil {
		t.Fatal(err)
	}
	if err := tab.AddDNAT("a", []DNAT{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8081, Protocol: "tcp", To: netip.MustParseAddrPort("10.88.0.2:80")}}); err != nil {
		t.Fatal(err)
	}
	if o, _ := tab.Owners(); o["a"] != 1 || o["b"] != 1 {
		t.Errorf("owners %v", o)
	}
	expect(t, "outside to a published port", outside, "192.0.2.10:8080", "192.0.2.1")
	expect(t, "the machine to its own address", nil, "192.0.2.10:8080", "192.0.2.10")
	expect(t, "the machine to 127.0.0.1", nil, "127.0.0.1:8080", gw.String())
	expect(t, "the machine to the bridge address", nil, "10.88.0.1:8080", gw.String())
	expect(t, "hairpin from another container", ctrs["a"], "192.0.2.10:8080", gw.String())
	expect(t, "hairpin to itself", ctrs["b"], "192.0.2.10:8080", gw.String())
	expect(t, "a port bound to 127.0.0.1", nil, "127.0.0.1:8081", gw.String())
	expectFail(t, "a port bound to 127.0.0.1, from outside", outside, "192.0.2.10:8081")
	// A container's connection to port 8080 of another host is not taken.
	expect(t, "container to another host's 8080", ctrs["a"], "192.0.2.1:8080", "192.0.2.10")

	if err := tab.DelDNAT("b"); err != nil {
		t.Fatal(err)
	}
	if o, _ := tab.Owners(); o["b"] != 0 || o["a"] != 1 {
		t.Errorf("owners after DelDNAT: %v", o)
	}
	expectFail(t, "a removed port", outside, "192.0.2.10:8080")
	if err := tab.DelDNAT("nobody"); err != nil {
		t.Errorf("DelDNAT of an owner without rules: %v", err)
	}

	if err := tab.AddDNAT("bad", []DNAT{{HostIP: netip.MustParseAddr("::1"), HostPort: 1, Protocol: "tcp", To: netip.MustParseAddrPort("10.88.0.2:1")}}); err == nil || !strings.Contains(err.Error(), "IPv4 only") {
		t.Errorf("IPv6 host address: %v", err)
	}
	if err := tab.AddDNAT("bad", []DNAT{{HostPort: 1, Protocol: "sctp", To: netip.MustParseAddrPort("10.88.0.2:1")}}); err == nil {
		t.Error("sctp accepted")
	}

	if err := Delete(""); err != nil {
		t.Fatal(err)
	}
	if ok, err := Exists(""); err != nil || ok {
		t.Errorf("table after Delete: %v %v", ok, err)
	}
	if err := Delete(""); err != nil {
		t.Errorf("deleting a missing table: %v", err)
	}
	if err := tab.DelDNAT("a"); err != nil {
		t.Errorf("DelDNAT without a table: %v", err)
	}
}
