package dhcp

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
	"github.com/photon-init/photon-init/pkg/net/internal/nettest"
	"github.com/photon-init/photon-init/pkg/net/link"
)

// fastTiming keeps the tests short: the lease times are the server's.
var fastTiming = Timing{Timeout: 200 * time.Millisecond, Tries: 2, BackoffMin: 200 * time.Millisecond, BackoffMax: 400 * time.Millisecond, RetransmitMin: 300 * time.Millisecond}

// event is a callback of the client.
type event struct {
	kind   string // "bound", "lost"
	lease  *Lease
	prev   *Lease
	reason string
}

// run starts a client on ifname and returns its events and a stop
// function that waits for Run to return.
func run(t *testing.T, ifname string) (<-chan event, func()) {
	t.Helper()
	events := make(chan event, 32)
	// Apply leases to the link as package hostnet does: the server answers
	// renewals at the leased address, which must be there for ARP.
	apply := func(l *Lease) {
		if ln, err := netlink.LinkByName(ifname); err == nil {
			link.AddAddress(ln, l.Address, l.Remaining(time.Now()))
		}
	}
	unapply := func(l *Lease) {
		if ln, err := netlink.LinkByName(ifname); err == nil {
			link.DelAddress(ln, l.Address)
		}
	}
	c := New(Options{
		Interface: ifname,
		Hostname:  "client-under-test",
		Timing:    fastTiming,
		Log:       nettest.Logger(t),
		Bound: func(l, prev *Lease) error {
			apply(l)
			events <- event{kind: "bound", lease: l, prev: prev}
			return nil
		},
		Lost: func(l *Lease, reason string) {
			unapply(l)
			events <- event{kind: "lost", lease: l, reason: reason}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return events, stop
}

func next(t *testing.T, events <-chan event, timeout time.Duration, kind string) event {
	t.Helper()
	select {
	case e := <-events:
		if e.kind != kind {
			t.Fatalf("got %s event (%s), want %s", e.kind, e.reason, kind)
		}
		return e
	case <-time.After(timeout):
		t.Fatalf("no %s event within %v", kind, timeout)
	}
	return event{}
}

// setup makes the client link cli0 in the test's namespace and the server
// link srv0 (10.99.0.1/24) in a second namespace.
func setup(t *testing.T) (*nettest.NS, netlink.Link) {
	t.Helper()
	nettest.RequireDnsmasq(t)
	ns := nettest.NewNS(t)
	cli := nettest.Veth(t, "cli0", "srv0", ns, "10.99.0.1/24")
	return ns, cli
}

var serverArgs = []string{
	"--dhcp-range=10.99.0.100,10.99.0.150,255.255.255.0,2m",
	"--dhcp-option=option:T1,2", "--dhcp-option=option:T2,4",
	"--dhcp-option=option:router,10.99.0.1",
	"--dhcp-option=option:dns-server,10.99.0.53,10.99.0.54",
	"--dhcp-option=option:domain-search,example.test,corp.test",
	"--dhcp-option=option:mtu,1400",
	"--dhcp-option=option:classless-static-route,10.200.0.0/16,10.99.0.1",
}

// TestLeaseRenewRelease takes a lease from dnsmasq, checks everything it
// brings, sees it renewed at T1 (2 s, option 58) and released at the end.
func TestLeaseRenewRelease(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET) {
		return
	}
	ns, cli := setup(t)
	srv := nettest.StartDnsmasq(t, ns, "srv0", "", serverArgs...)
	events, stop := run(t, "cli0")

	l := next(t, events, 10*time.Second, "bound").lease
	if !netip.MustParsePrefix("10.99.0.0/24").Contains(l.Address.Addr()) || l.Address.Bits() != 24 {
		t.Errorf("address %s", l.Address)
	}
	want := func(what string, ok bool) {
		if !ok {
			t.Errorf("lease %s: wrong %s", l, what)
		}
	}
	want("server", l.Server == netip.MustParseAddr("10.99.0.1"))
	want("duration", l.Duration == 2*time.Minute)
	// dnsmasq sends T1 2-3 s (it adds a little of its own), T2 4 s.
	want("T1/T2", l.T1 >= 2*time.Second && l.T1 <= 3*time.Second && l.T2 == 4*time.Second)
	want("dns", slices.Equal(l.DNS, []netip.Addr{netip.MustParseAddr("10.99.0.53"), netip.MustParseAddr("10.99.0.54")}))
	want("search", slices.Equal(l.Search, []string{"example.test", "corp.test"}))
	want("mtu", l.MTU == 1400)
	want("routes", len(l.Routes) == 1 && l.Routes[0] == Route{To: netip.MustParsePrefix("10.200.0.0/16"), Via: netip.MustParseAddr("10.99.0.1")})
	want("routers", slices.Equal(l.Routers, []netip.Addr{netip.MustParseAddr("10.99.0.1")}))
	if got := nettest.Leases(srv.LeaseFile(), cli.Attrs().HardwareAddr); !slices.Contains(got, l.Address.Addr()) {
		t.Errorf("server's lease file holds %v for us, want %s", got, l.Address.Addr())
	}

	start := time.Now()
	r := next(t, events, 6*time.Second, "bound")
	if r.prev != l || r.lease.Address != l.Address || !r.lease.Bound.After(l.Bound) {
		t.Errorf("renewal: %+v (prev %p, first %p)", r.lease, r.prev, l)
	}
	t.Logf("renewed after %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(srv.Output(), "DHCPACK(srv0) "+l.Address.Addr().String()) {
		t.Errorf("server log shows no ACK")
	}

	stop()
	lost := next(t, events, time.Second, "lost")
	if lost.reason != "released" {
		t.Errorf("lost for %q, want released", lost.reason)
	}
	nettest.Eventually(t, 5*time.Second, "the server still holds the lease after the release", func() bool {
		return len(nettest.Leases(srv.LeaseFile(), cli.Attrs().HardwareAddr)) == 0
	})
}

// TestServerAppearsLater starts the client with no server: it keeps
// retrying with backoff, and takes a lease soon after a server appears.
func TestServerAppearsLater(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET) {
		return
	}
	ns, _ := setup(t)
	events, _ := run(t, "cli0")
	select {
	case e := <-events:
		t.Fatalf("event with no server: %+v", e)
	case <-time.After(1500 * time.Millisecond):
	}
	nettest.StartDnsmasq(t, ns, "srv0", "", serverArgs...)
	appeared := time.Now()
	e := next(t, events, 5*time.Second, "bound")
	t.Logf("leased %s %v after the server appeared", e.lease.Address, time.Since(appeared).Round(time.Millisecond))
}

// TestRebindWithAnotherServer binds with one server, which then goes away;
// another (same pool, new address) answers only the REBINDING broadcast
// after T2, since renewals are for the first server alone.
func TestRebindWithAnotherServer(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET) {
		return
	}
	ns, _ := setup(t)
	leases := t.TempDir() + "/leases"
	first := nettest.StartDnsmasq(t, ns, "srv0", leases, serverArgs...)
	events, _ := run(t, "cli0")
	l := next(t, events, 10*time.Second, "bound").lease
	first.Stop()
	nettest.SetAddr(t, ns, "srv0", "10.99.0.2/24")
	nettest.StartDnsmasq(t, ns, "srv0", leases, serverArgs...)

	e := next(t, events, 8*time.Second, "bound")
	if e.lease.Server != netip.MustParseAddr("10.99.0.2") || e.lease.Address != l.Address {
		t.Errorf("rebound %s, want %s from 10.99.0.2", e.lease, l.Address)
	}
	if since := e.lease.Bound.Sub(l.Bound); since < l.T2 {
		t.Errorf("rebound %v after binding, before T2 (%v): a renewal went to the wrong server", since, l.T2)
	}
}

// TestNakStartsOver: a server that no longer knows the lease (a new pool)
// refuses the renewal; the client drops the lease and takes a new one.
func TestNakStartsOver(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET) {
		return
	}
	ns, _ := setup(t)
	first := nettest.StartDnsmasq(t, ns, "srv0", "", serverArgs...)
	events, _ := run(t, "cli0")
	l := next(t, events, 10*time.Second, "bound").lease
	first.Stop()
	args := slices.Clone(serverArgs)
	args[0] = "--dhcp-range=10.99.0.200,10.99.0.210,255.255.255.0,2m"
	nettest.StartDnsmasq(t, ns, "srv0", "", args...)

	lost := next(t, events, 6*time.Second, "lost")
	if lost.reason != "refused" || lost.lease.Address != l.Address {
		t.Errorf("lost %s for %q, want %s refused", lost.lease.Address, lost.reason, l.Address)
	}
	e := next(t, events, 5*time.Second, "bound")
	if a := e.lease.Address.Addr(); a.Less(netip.MustParseAddr("10.99.0.200")) || netip.MustParseAddr("10.99.0.210").Less(a) {
		t.Errorf("new lease %s is not from the new pool", e.lease.Address)
	}
	if e.prev != nil {
		t.Errorf("a lease after INIT has a previous lease")
	}
}

func TestNoSuchInterfaceRetries(t *testing.T) {
	events, stop := run(t, "nonexistent9")
	time.Sleep(300 * time.Millisecond)
	stop()
	select {
	case e := <-events:
		t.Errorf("event: %+v", e)
	default:
	}
}

func TestBackoff(t *testing.T) {
	c := New(Options{Timing: Timing{BackoffMin: time.Second, BackoffMax: 8 * time.Second}})
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 10: 8 * time.Second} {
		got := c.backoff(n)
		if got < want*8/10 || got > want*12/10 {
			t.Errorf("backoff(%d) = %v, want %v ±20%%", n, got, want)
		}
	}
	if d := New(Options{}).timing; d.Timeout != time.Second || d.Tries != 4 || d.BackoffMax != 30*time.Second || d.RetransmitMin != time.Minute {
		t.Errorf("defaults %+v", d)
	}
}
