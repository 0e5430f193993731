package boot

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
	"github.com/photon-init/photon-init/internal/syncbuf"
	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/net/link"
)

// TestNetworkStepSandbox runs the network step in sandbox mode inside a
// network namespace of the test's own: init.yaml's static link is
// configured, a bad ip= is the step's error, and the shutdown releases.
func TestNetworkStepSandbox(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET|unix.CLONE_NEWNS) {
		return
	}
	nstest.Private(t)
	if err := unix.Mount("tmpfs", "/run", "tmpfs", 0, ""); err != nil { // resolv.conf goes to /run/photon
		t.Fatal(err)
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth7"}, PeerName: "p-eth7"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("init.yaml", []byte("network:\n  interfaces:\n    - name: eth7\n      addresses: [192.0.2.7/24]\n  dns:\n    nameservers: [192.0.2.53]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	m := newMachine(Options{Sandbox: true}, &out)
	m.config = cfg
	m.cmdline = ParseCmdline("ip=eth8:bogus")
	err = m.startNetwork(context.Background())
	if err == nil || !strings.Contains(err.Error(), `ip=eth8:bogus: autoconf "bogus"`) {
		t.Errorf("step error = %v, want the bad ip=", err)
	}
	l, _ := netlink.LinkByName("eth7")
	a, _ := link.Addresses(l, unix.AF_INET)
	if !slices.Contains(a, netip.MustParsePrefix("192.0.2.7/24")) {
		t.Errorf("eth7 addresses %v", a)
	}
	n := m.Network()
	if n == nil {
		t.Fatal("no network manager after the step")
	}
	select {
	case <-n.Online():
	default:
		t.Error("not online after the static configuration")
	}
	data, _ := os.ReadFile("/run/photon/resolv.conf")
	if !strings.Contains(string(data), "nameserver 192.0.2.53") {
		t.Errorf("resolv.conf:\n%s", data)
	}
	if dest, _ := os.Readlink("/etc/resolv.conf"); dest == "/run/photon/resolv.conf" {
		t.Error("sandbox mode linked the host's /etc/resolv.conf")
	}
	if err := n.Stop(context.Background()); err != nil {
		t.Error(err)
	}
	t.Logf("console:\n%s", out.String())
}

// TestHostNetworkDetected: the test process runs in the host's network
// namespace (as PID 1 sees it); a child in a new one does not.
func TestHostNetworkDetected(t *testing.T) {
	if nstest.InChild(t.Name()) {
		if host, why := hostNetwork(); host {
			t.Errorf("a new network namespace taken for the host's: %s", why)
		}
		return
	}
	if self, _ := os.Readlink("/proc/self/ns/net"); self != "" {
		if init, err := os.Readlink("/proc/1/ns/net"); err == nil && init == self {
			if host, _ := hostNetwork(); !host {
				t.Error("the host's network namespace not detected")
			}
		}
	}
	nstest.Run(t, unix.CLONE_NEWNET)
}
