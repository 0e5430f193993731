package container

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
	"github.com/photon-init/photon-init/pkg/net/containernet"
	"github.com/photon-init/photon-init/pkg/net/link"
	"github.com/photon-init/photon-init/pkg/net/nat"
	"github.com/photon-init/photon-init/pkg/net/netnsdir"
)

// envNetprobe passes the netprobe binary's path to the namespace children.
const envNetprobe = "PHOTON_CONTAINER_TEST_NETPROBE"

var netprobeOnce sync.Once

// netprobeBinary builds testdata/netprobe (static) once, beside the probe
// (so that TestMain removes it), and exports its path. Call it before
// rootEnv.
func netprobeBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(envNetprobe); p != "" {
		return p
	}
	out := filepath.Join(filepath.Dir(probeBinary(t)), "netprobe")
	var err error
	netprobeOnce.Do(func() {
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./testdata/netprobe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, berr := cmd.CombinedOutput(); berr != nil {
			err = fmt.Errorf("build netprobe: %v\n%s", berr, b)
			return
		}
		err = os.Setenv(envNetprobe, out)
	})
	if err != nil {
		t.Fatal(err)
	}
	return os.Getenv(envNetprobe)
}

// netImage is a one-layer image with netprobe as its entrypoint.
func netImage(t *testing.T) *image.Image {
	t.Helper()
	layer := filepath.Join(t.TempDir(), "layer0")
	if err := os.MkdirAll(filepath.Join(layer, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(layer, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	copyExecutable(t, os.Getenv(envNetprobe), filepath.Join(layer, "netprobe"))
	return &image.Image{
		Ref: "test/netprobe", Digest: "sha256:netprobe", Layers: []string{layer},
		Config: image.Config{Entrypoint: []string{"/netprobe"}},
	}
}

// outsideHost is a network namespace standing for another host on the
// machine's uplink: the machine (the test's namespace) is 192.0.2.10/24
// on uplink0, the host 192.0.2.1/24. It answers TCP on 192.0.2.1:9000
// with "outside from PEER".
type outsideHost struct{ path string }

const (
	machineAddr = "192.0.2.10"
	outsideAddr = "192.0.2.1"
)

func newOutsideHost(t *testing.T) *outsideHost {
	t.Helper()
	dir, err := netnsdir.Open(filepath.Join(t.TempDir(), "testns"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Unmount() })
	p, err := dir.Create("outside")
	if err != nil {
		t.Fatal(err)
	}
	h, err := netns.GetFromPath(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(h)}); err != nil {
		t.Fatal(err)
	}
	up, _ := netlink.LinkByName("uplink0")
	if err := link.Apply(up, link.Static{Addresses: []netip.Prefix{netip.MustParsePrefix(machineAddr + "/24")}}); err != nil {
		t.Fatal(err)
	}
	o := &outsideHost{path: p}
	var ln net.Listener
	o.do(t, func() error {
		if err := link.LoopbackUp(); err != nil {
			return err
		}
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := link.Apply(eth, link.Static{Addresses: []netip.Prefix{netip.MustParsePrefix(outsideAddr + "/24")}}); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", outsideAddr+":9000")
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "outside from %s\n", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
	return o
}

// do runs f on a thread in the outside namespace. Sockets made there stay
// in it.
func (o *outsideHost) do(t *testing.T, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // unlocked only once back home
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		h, err := netns.GetFromPath(o.path)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- err // the thread dies locked
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// dialLine connects to addr and returns the first line of the answer.
func dialLine(addr string) (string, error) {
	c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// dialFrom dials addr from the outside host.
func (o *outsideHost) dialFrom(t *testing.T, addr string) (string, error) {
	t.Helper()
	var line string
	var derr error
	o.do(t, func() error {
		line, derr = dialLine(addr)
		return nil
	})
	return line, derr
}

// results waits for a netprobe get to say "done" and returns its lines
// as ADDR -> ANSWER.
func results(t *testing.T, e *testEnv, name string) map[string]string {
	t.Helper()
	waitLine(t, e.console, name, "done")
	out := map[string]string{}
	for _, l := range e.console.lines(name) {
		if a, answer, ok := strings.Cut(l, " -> "); ok {
			out[a] = answer
		}
	}
	return out
}

// leftoverLinks lists the veths left in the test's namespace, besides the
// uplink.
func leftoverLinks(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if l.Type() == "veth" && l.Attrs().Name != "uplink0" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// TestBridgeNetwork runs real containers on the bridge in the test's own
// network namespace (the machine) with an "outside" host namespace on its
// uplink: containers reach each other by name (/etc/hosts) and the outside
// through NAT, a published port is reached from the outside namespace and
// from the machine itself, a container sharing another's network
// (container:NAME) reaches it on localhost, a second container asking for
// a published port fails alone, a restarted container keeps its address,
// /etc/hosts follows containers coming and going, and once every container
// is destroyed no veth, namespace or port rule is left.
func TestBridgeNetwork(t *testing.T) {
	netprobeBinary(t)
	e := rootEnv(t)
	if e == nil {
		return
	}
	out := newOutsideHost(t)
	img := netImage(t)
	ctx := context.Background()

	db := e.start(t, &manifest.Container{Name: "db", Command: []string{"serve", "80"}}, img)
	waitLine(t, e.console, "db", "listening on 80")
	webM := &manifest.Container{
		Name: "web", Hostname: "www", Command: []string{"serve", "80"},
		Ports: []manifest.Port{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
	}
	web := e.start(t, webM, img)
	waitLine(t, e.console, "web", "listening on 80")

	client := e.start(t, &manifest.Container{Name: "client", Command: []string{"get", "db:80", "web:80", "www:80", outsideAddr + ":9000"}}, img)
	got := results(t, e, "client")
	ep := func(name string) string {
		p, ok := e.rt.net.net.Endpoint(name)
		if !ok {
			t.Fatalf("no endpoint for %s", name)
		}
		return p.Addr.String()
	}
	clientAddr := ep("client")
	want := map[string]string{
		"db:80":               "db from " + clientAddr,
		"web:80":              "www from " + clientAddr,
		"www:80":              "www from " + clientAddr,
		outsideAddr + ":9000": "outside from " + machineAddr, // masqueraded
	}
	for a, w := range want {
		if got[a] != w {
			t.Errorf("client: %s -> %q, want %q", a, got[a], w)
		}
	}

	// The published port, from the outside host and from the machine.
	if line, err := out.dialFrom(t, machineAddr+":8080"); err != nil || line != "www from "+outsideAddr {
		t.Errorf("outside -> %s:8080: %q %v", machineAddr, line, err)
	}
	for _, a := range []string{"127.0.0.1:8080", machineAddr + ":8080"} {
		if line, err := dialLine(a); err != nil || !strings.HasPrefix(line, "www from ") {
			t.Errorf("machine -> %s: %q %v", a, line, err)
		}
	}

	// A container in web's namespace reaches web on localhost and has its
	// host name.
	sidecar := e.start(t, &manifest.Container{Name: "sidecar", NetworkMode: "container:web", Command: []string{"get", "localhost:80"}}, img)
	if got := results(t, e, "sidecar"); got["localhost:80"] != "www from 127.0.0.1" {
		t.Errorf("sidecar: %v", got)
	}
	if _, err := e.rt.Create(ctx, &manifest.Container{Name: "orphan", NetworkMode: "container:nothing", Command: []string{"addr"}}, img); err == nil ||
		!strings.Contains(err.Error(), "container nothing does not exist") {
		t.Errorf("container:NAME of a missing container: %v", err)
	}

	// Another container asking for port 8080 fails alone.
	_, err := e.rt.Create(ctx, &manifest.Container{
		Name: "thief", Command: []string{"serve", "80"},
		Ports: []manifest.Port{{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
	}, img)
	if err == nil || !strings.Contains(err.Error(), "create container thief: network of thief: port 127.0.0.1:8080:80/tcp: host port 8080/tcp is already published by web") {
		t.Errorf("port clash: %v", err)
	}
	if line, err := dialLine("127.0.0.1:8080"); err != nil || !strings.HasPrefix(line, "www from ") {
		t.Errorf("web after the clash: %q %v", line, err)
	}

	// /etc/hosts follows a container coming and going, in place.
	hostsPath := filepath.Join(e.dir, "data", "containers", "db", "hosts")
	var before os.FileInfo
	if before, err = os.Stat(hostsPath); err != nil {
		t.Fatal(err)
	}
	late := e.start(t, &manifest.Container{Name: "late", Command: []string{"serve", "80"}}, img)
	hosts, _ := os.ReadFile(hostsPath)
	if !strings.Contains(string(hosts), ep("late")+"\tlate\n") || !strings.Contains(string(hosts), ep("web")+"\tweb www sidecar\n") {
		t.Errorf("db's /etc/hosts with late:\n%s", hosts)
	}
	if err := late.Destroy(); err != nil {
		t.Fatal(err)
	}
	hosts, _ = os.ReadFile(hostsPath)
	if strings.Contains(string(hosts), "late") {
		t.Errorf("db's /etc/hosts after late left:\n%s", hosts)
	}
	after, _ := os.Stat(hostsPath)
	if !os.SameFile(before, after) {
		t.Error("/etc/hosts was replaced, not rewritten in place")
	}

	// A restarted container keeps its address and its port.
	webAddr := ep("web")
	if err := web.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := dialLine("127.0.0.1:8080"); err == nil {
		t.Error("web's port answers after web was destroyed")
	}
	web = e.start(t, webM, img)
	if a := ep("web"); a != webAddr {
		t.Errorf("web restarted at %s, was %s", a, webAddr)
	}
	eventually(t, "outside -> restarted web", func() (string, error) { return out.dialFrom(t, machineAddr+":8080") }, "www from "+outsideAddr)

	// Nothing is left once every container is gone.
	for _, c := range []*Container{client, sidecar, web, db} {
		if err := c.Destroy(); err != nil {
			t.Error(err)
		}
	}
	if l := leftoverLinks(t); len(l) != 0 {
		t.Errorf("veths left: %v", l)
	}
	if files, _ := os.ReadDir(filepath.Join(e.dir, "netns")); len(files) != 0 {
		t.Errorf("namespace files left: %v", files)
	}
	tab, _ := nat.New(nat.Config{Bridge: containernet.DefaultBridge, Subnet: netip.MustParsePrefix(containernet.DefaultSubnet)})
	if owners, err := tab.Owners(); err != nil || len(owners) != 0 {
		t.Errorf("port rules left: %v %v", owners, err)
	}
	// The addresses stay reserved until Remove.
	if err := e.rt.Remove("web"); err != nil {
		t.Fatal(err)
	}
	addrs, _ := e.rt.net.net.Addresses()
	if _, ok := addrs["web"]; ok || addrs["db"].String() == "" {
		t.Errorf("addresses after removing web: %v", addrs)
	}
}

// TestNetworkCleanupAfterRestart: containers of an earlier run (their
// runtime gone without destroying them) are cleaned up by the next
// runtime's Cleanup — processes, veths, namespace files and the nftables
// table — and the next run's containers get their old addresses back.
func TestNetworkCleanupAfterRestart(t *testing.T) {
	netprobeBinary(t)
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := netImage(t)
	m := &manifest.Container{Name: "web", Command: []string{"serve", "80"}, Ports: []manifest.Port{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}}
	old, err := e.rt.Create(context.Background(), m, img)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitLine(t, e.console, "web", "listening on 80")
	oldAddr := e.rt.net.members["web"].addr
	if _, err := e.rt.Create(context.Background(), &manifest.Container{Name: "quiet", NetworkMode: "none", Command: []string{"serve", "80"}}, img); err != nil {
		t.Fatal(err)
	}

	// photon-init starts again: a new runtime on the same directories.
	rt, err := New(e.rt.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l := leftoverLinks(t); len(l) != 0 {
		t.Errorf("veths left after cleanup: %v", l)
	}
	if files, _ := os.ReadDir(filepath.Join(e.dir, "netns")); len(files) != 0 {
		t.Errorf("namespace files left after cleanup: %v", files)
	}
	if ok, _ := nat.Exists(""); ok {
		t.Error("the nftables table of the earlier run is still there")
	}
	c, err := rt.Create(context.Background(), m, img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Destroy() })
	if a := rt.net.members["web"].addr; a != oldAddr {
		t.Errorf("web at %s in the new run, was %s", a, oldAddr)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// (Connections from the machine to 127.0.0.1 come from the bridge's
	// address.)
	eventually(t, "web in the new run", func() (string, error) { return dialLine("127.0.0.1:8080") }, "web from 10.88.0.1")
}

// eventually retries get for 10 s until it returns want.
func eventually(t *testing.T, what string, get func() (string, error), want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := get()
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %q %v, want %q", what, got, err, want)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBridgeSubnetOverlap: a bridge subnet that overlaps a route of the
// machine is an error for bridged containers only.
func TestBridgeSubnetOverlap(t *testing.T) {
	netprobeBinary(t)
	e := rootEnv(t, func(t *testing.T) {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lan0"}, PeerName: "lan1"}); err != nil {
			t.Fatal(err)
		}
		lan, _ := netlink.LinkByName("lan0")
		if err := link.Apply(lan, link.Static{Addresses: []netip.Prefix{netip.MustParsePrefix("10.88.7.1/24")}}); err != nil {
			t.Fatal(err)
		}
	})
	if e == nil {
		return
	}
	img := netImage(t)
	_, err := e.rt.Create(context.Background(), &manifest.Container{Name: "bridged", Command: []string{"addr"}}, img)
	if err == nil || !strings.Contains(err.Error(), "subnet 10.88.0.0/16 overlaps the route to 10.88.7.0/24 on lan0; choose another subnet (init.yaml network.bridge.subnet)") {
		t.Errorf("overlap: %v", err)
	}
	if exit := e.run(t, &manifest.Container{Name: "isolated", NetworkMode: "none", Command: []string{"addr"}}, img); exit.Code != 1 {
		// eth0 does not exist with network_mode none: netprobe exits 1.
		t.Errorf("isolated: %v %q", exit, e.console.lines("isolated"))
	}
	if !slices.ContainsFunc(e.console.lines("isolated"), func(l string) bool { return strings.Contains(l, "no such network interface") }) {
		t.Errorf("isolated: %q", e.console.lines("isolated"))
	}
}
