// Package nettest builds small networks for pkg/net's tests: a second
// network namespace held by a locked OS thread (the "server side"), veth
// pairs between it and the test's own namespace, and a real DHCP server
// (Debian's dnsmasq) running in it. The test process itself must already
// run in a network namespace of its own (internal/nstest with
// CLONE_NEWNET), so that nothing here can touch the host's links; every
// namespace, link and process dies with the test.
package nettest

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/syncbuf"
)

// NS is a network namespace served by one locked OS thread: Do runs
// functions there.
type NS struct {
	calls chan func()
	done  chan struct{}
	fd    int
}

// NewNS creates a network namespace; it is torn down at the end of the
// test (its thread exits without unlocking, so Go discards the thread).
func NewNS(t *testing.T) *NS {
	t.Helper()
	ns := &NS{calls: make(chan func()), done: make(chan struct{})}
	ready := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.New()
		if err != nil {
			ready <- fmt.Errorf("new netns: %w", err)
			return
		}
		ns.fd = int(h)
		ready <- nil
		for {
			select {
			case f := <-ns.calls:
				f()
			case <-ns.done:
				h.Close()
				return
			}
		}
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(ns.done) })
	return ns
}

// Do runs f in the namespace and waits for it.
func (ns *NS) Do(f func()) {
	finished := make(chan struct{})
	ns.calls <- func() { defer close(finished); f() }
	<-finished
}

// Fd is the namespace's file descriptor (for netlink.LinkSetNsFd).
func (ns *NS) Fd() int { return ns.fd }

// Veth creates a veth pair in the test's namespace, moves peer into ns
// with addr (a prefix, may be "") and brings both ends up. It returns the
// local end.
func Veth(t *testing.T, local, peer string, ns *NS, addr string) netlink.Link {
	t.Helper()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: local}, PeerName: peer}); err != nil {
		t.Fatalf("add veth %s/%s: %v", local, peer, err)
	}
	p, err := netlink.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(p, ns.Fd()); err != nil {
		t.Fatalf("move %s: %v", peer, err)
	}
	var nsErr error
	ns.Do(func() {
		p, err := netlink.LinkByName(peer)
		if err != nil {
			nsErr = err
			return
		}
		if addr != "" {
			a, err := netlink.ParseAddr(addr)
			if err != nil {
				nsErr = err
				return
			}
			if err := netlink.AddrAdd(p, a); err != nil {
				nsErr = fmt.Errorf("address %s on %s: %w", addr, peer, err)
				return
			}
		}
		nsErr = netlink.LinkSetUp(p)
	})
	if nsErr != nil {
		t.Fatal(nsErr)
	}
	l, err := netlink.LinkByName(local)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return l
}

// SetAddr replaces the addresses of link name in ns with addr.
func SetAddr(t *testing.T, ns *NS, name, addr string) {
	t.Helper()
	var nsErr error
	ns.Do(func() {
		l, err := netlink.LinkByName(name)
		if err != nil {
			nsErr = err
			return
		}
		old, _ := netlink.AddrList(l, unix.AF_INET)
		for _, a := range old {
			netlink.AddrDel(l, &a)
		}
		a, _ := netlink.ParseAddr(addr)
		nsErr = netlink.AddrAdd(l, a)
	})
	if nsErr != nil {
		t.Fatal(nsErr)
	}
}

// RequireDnsmasq skips the test under -short when dnsmasq is missing, and
// fails it otherwise (scripts/deps.sh installs dnsmasq-base).
func RequireDnsmasq(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("dnsmasq")
	if err != nil {
		for _, c := range []string{"/usr/sbin/dnsmasq", "/sbin/dnsmasq"} {
			if _, serr := os.Stat(c); serr == nil {
				return c
			}
		}
		if testing.Short() {
			t.Skip("dnsmasq not installed (scripts/deps.sh installs dnsmasq-base)")
		}
		t.Fatal("dnsmasq not installed: run scripts/deps.sh (dnsmasq-base)")
	}
	return p
}

// Dnsmasq is a DHCP server running in a test namespace.
type Dnsmasq struct {
	cmd       *exec.Cmd
	leaseFile string
	out       *syncbuf.Buffer
	waited    chan struct{}
}

// StartDnsmasq runs dnsmasq as a DHCP server only (no DNS) on iface in ns,
// with the given extra arguments (--dhcp-range=..., --dhcp-option=...).
// leaseFile keeps leases across restarts; "" uses a new one. It is
// stopped at the end of the test.
func StartDnsmasq(t *testing.T, ns *NS, iface, leaseFile string, args ...string) *Dnsmasq {
	t.Helper()
	bin := RequireDnsmasq(t)
	if leaseFile == "" {
		leaseFile = filepath.Join(t.TempDir(), "dnsmasq.leases")
	}
	all := append([]string{
		"--no-daemon", "--conf-file=/dev/null", "--port=0", "--log-dhcp", "--log-facility=-",
		"--bind-interfaces", "--interface=" + iface, "--except-interface=lo",
		"--dhcp-leasefile=" + leaseFile, "--pid-file=", "--user=root", "--group=root",
		// No ping before an offer: dnsmasq's check of an address delays
		// the offer beyond the clients' short test timeouts.
		"--dhcp-authoritative", "--no-ping",
	}, args...)
	d := &Dnsmasq{leaseFile: leaseFile, out: &syncbuf.Buffer{}, waited: make(chan struct{})}
	var startErr error
	ns.Do(func() {
		d.cmd = exec.Command(bin, all...)
		d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
		d.cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
		startErr = d.cmd.Start()
	})
	if startErr != nil {
		t.Fatalf("start dnsmasq: %v", startErr)
	}
	go func() { d.cmd.Wait(); close(d.waited) }()
	t.Cleanup(func() {
		d.Stop()
		t.Logf("dnsmasq output:\n%s", d.out.String())
	})
	// Wait until it listens (it says "DHCP, IP range ...").
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(d.out.String(), "DHCP, IP range") {
		select {
		case <-d.waited:
			t.Fatalf("dnsmasq exited: %s", d.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq did not start: %s", d.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return d
}

// Stop kills the server and waits for it.
func (d *Dnsmasq) Stop() {
	select {
	case <-d.waited:
		return
	default:
	}
	d.cmd.Process.Signal(unix.SIGTERM)
	select {
	case <-d.waited:
	case <-time.After(3 * time.Second):
		d.cmd.Process.Kill()
		<-d.waited
	}
}

// Output is what dnsmasq logged so far.
func (d *Dnsmasq) Output() string { return d.out.String() }

// LeaseFile is the server's lease database.
func (d *Dnsmasq) LeaseFile() string { return d.leaseFile }

// Leases returns the addresses the server's lease file holds for mac.
func Leases(leaseFile string, mac net.HardwareAddr) []netip.Addr {
	data, _ := os.ReadFile(leaseFile)
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && strings.EqualFold(f[1], mac.String()) {
			if a, err := netip.ParseAddr(f[2]); err == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// Eventually polls cond every 20 ms until it holds or timeout passes.
func Eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logger returns a debug-level logger that writes to the test's log.
func Logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
