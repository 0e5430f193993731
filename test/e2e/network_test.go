package e2e

import (
	"errors"
	"io"
	"net"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/photon-init/photon-init/test/vm"
)

// guestPort is a guest TCP port forwarded from the host; nothing listens
// on it in the guest.
const guestPort = 8080

// bootNet boots photon-init with cfg's network settings and waits for
// photon-init's first line.
func bootNet(t *testing.T, cfg vm.Config) *vm.VM {
	t.Helper()
	cfg.Host = vm.HostT(t)
	cfg.Initramfs = vm.InitramfsT(t, cfg.Host, nil, vm.BuildOptions{Compress: "none"})
	v := vm.StartT(t, cfg)
	if _, err := v.WaitFor(phase(t), vm.PhotonStart); err != nil {
		t.Fatal(err)
	}
	return v
}

// waitLines waits for each pattern in order.
func waitLines(t *testing.T, v *vm.VM, patterns ...string) {
	t.Helper()
	ctx := phase(t)
	for _, p := range patterns {
		l, err := v.WaitFor(ctx, regexp.MustCompile(p))
		if err != nil {
			t.Fatalf("waiting for %q: %v", p, err)
		}
		t.Logf("console: %s", l)
	}
}

// expectGuestStack checks that a hostfwd'ed port reaches the guest's own
// TCP stack at 10.0.2.15: with nothing listening the guest answers RST and
// QEMU closes the host's connection at once. Were 10.0.2.15 not the
// guest's address, QEMU would accept and then hang (no ARP answer).
func expectGuestStack(t *testing.T, v *vm.VM) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", v.Addr(guestPort), 5*time.Second)
	if err != nil {
		t.Fatalf("dial the forwarded port: %v", err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("the forwarded connection hangs: the guest does not answer at 10.0.2.15")
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		t.Logf("the guest's stack refused the forwarded connection after %v, as it should with nothing listening", time.Since(start).Round(time.Millisecond))
	default:
		t.Fatalf("read from the forwarded port: %v", err)
	}
}

// TestNetworkDHCP: with no network configuration, photon-init takes
// 10.0.2.15 from QEMU's built-in DHCP server on eth0, and a hostfwd'ed
// port reaches the guest.
func TestNetworkDHCP(t *testing.T) {
	forEachMachine(t, vm.Machines(), func(t *testing.T, m vm.Machine) {
		v := bootNet(t, vm.Config{Machine: m, GuestPorts: []int{guestPort}})
		waitLines(t, v,
			`network: eth0: DHCP in the background \(default\)`,
			`dhcp: eth0 leased 10\.0\.2\.15/24 from 10\.0\.2\.2`,
			`network: online \(eth0 configured\)`)
		expectGuestStack(t, v)
		if _, ok := v.Find(regexp.MustCompile(`network: host name photon-[0-9a-f]{8} \(default until DHCP gives one\)`)); !ok {
			t.Error("no stable default host name on the console")
		}
	})
}

// TestNetworkStaticIP: the kernel's ip= configures eth0 statically; no
// DHCP client runs.
func TestNetworkStaticIP(t *testing.T) {
	forEachMachine(t, []vm.Machine{vm.Q35}, func(t *testing.T, m vm.Machine) {
		v := bootNet(t, vm.Config{Machine: m, GuestPorts: []int{guestPort},
			KernelArgs: []string{"ip=10.0.2.15::10.0.2.2:255.255.255.0:static-guest:eth0:off:10.0.2.3"}})
		waitLines(t, v,
			`network: host name static-guest \(configuration\)`,
			`network: eth0: 10\.0\.2\.15/24, default via 10\.0\.2\.2 \(ip=`,
			`network: online \(eth0 configured\)`)
		if _, err := v.WaitFor(phase(t), vm.BootComplete); err != nil {
			t.Fatal(err)
		}
		expectGuestStack(t, v)
		if l, ok := v.Find(regexp.MustCompile(`dhcp: `)); ok {
			t.Errorf("a DHCP client ran: %s", l.Text)
		}
	})
}

// TestNetworkNoDevice: a machine without a NIC boots to the end; only lo
// is up and nothing waits for DHCP.
func TestNetworkNoDevice(t *testing.T) {
	forEachMachine(t, []vm.Machine{vm.MicroVM}, func(t *testing.T, m vm.Machine) {
		v := bootNet(t, vm.Config{Machine: m, NoNetwork: true})
		if _, err := v.WaitFor(phase(t), vm.BootComplete); err != nil {
			t.Fatal(err)
		}
		if l, ok := v.Find(regexp.MustCompile(`dhcp: |network: online|ERROR network`)); ok {
			t.Errorf("unexpected: %s", l.Text)
		}
	})
}
