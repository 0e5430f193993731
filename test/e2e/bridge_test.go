package e2e

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/photon-init/photon-init/internal/testimage"
	"github.com/photon-init/photon-init/test/vm"
)

// bridgeImage is the test server's image, preloaded into the initramfs.
const bridgeImage = "preloaded/app:1.0"

// bootContainers boots an initramfs holding the test server's image
// (preloaded) and the given container manifests, and waits for the end of
// the boot.
func bootContainers(t *testing.T, cfg vm.Config, manifests map[string]string) *vm.VM {
	t.Helper()
	im := testimage.Build(t, "")
	files := vm.Overlay{}
	for name, m := range manifests {
		files["etc/photon/containers/"+name+".yaml"] = m
	}
	cfg.Host = vm.HostT(t)
	cfg.Initramfs = vm.InitramfsT(t, cfg.Host, files, vm.BuildOptions{
		Compress: "none",
		Images:   []string{bridgeImage + "=oci:" + im.OCILayout + ":" + testimage.Tag},
	})
	v := vm.StartT(t, cfg)
	if _, err := v.WaitFor(phase(t), vm.BootComplete); err != nil {
		t.Fatal(err)
	}
	return v
}

// waitReady waits for container name's "listening" line.
func waitReady(ctx context.Context, t *testing.T, v *vm.VM, name string) {
	t.Helper()
	ready := regexp.MustCompile(`^\[` + name + `\] ` + regexp.QuoteMeta(testimage.ReadyLine))
	if _, err := waitFind(ctx, v, ready); err != nil {
		t.Fatalf("container %s never said it listens: %v\n%s", name, err, v.ConsoleTail(40))
	}
}

// noContainerErrors fails t for any container error on the console.
func noContainerErrors(t *testing.T, v *vm.VM) {
	t.Helper()
	for _, l := range v.Lines() {
		if strings.Contains(l.Text, "ERROR container ") || strings.Contains(l.Text, "ERROR network") {
			t.Errorf("unexpected error: %s", l.Text)
		}
	}
}

// TestBridgeContainer: a container with the default network mode (bridge)
// and ports ["8080:80"] — the test server listening on port 80 in its own
// network namespace — answers the host through QEMU's hostfwd to the
// guest's port 8080 (then the DNAT of the published port), beside a second
// bridged container; the power button then stops both cleanly.
func TestBridgeContainer(t *testing.T) {
	forEachMachine(t, []vm.Machine{vm.Q35}, func(t *testing.T, m vm.Machine) {
		v := bootContainers(t, vm.Config{Machine: m, MemoryMB: 768, GuestPorts: []int{8080}}, map[string]string{
			"web": "# e2e: a bridged container with a published port\n" +
				"image: " + bridgeImage + "\n" +
				"ports: [\"8080:80\"]\n" +
				"environment:\n  PORT: \"80\"\n" +
				"stop_grace_period: 5s\n",
			"api": "# e2e: another bridged container, nothing published\n" +
				"image: " + bridgeImage + "\n" +
				"environment:\n  PORT: \"80\"\n" +
				"stop_grace_period: 5s\n",
		})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		waitReady(ctx, t, v, "web")
		waitReady(ctx, t, v, "api")
		if _, ok := v.Find(regexp.MustCompile(`network: bridge photon0 up with 10\.88\.0\.1/16`)); !ok {
			t.Errorf("no line about the bridge on the console")
		}
		client := &http.Client{Timeout: 10 * time.Second}
		body, err := get(ctx, client, "http://"+v.Addr(8080)+"/")
		if err != nil {
			t.Fatalf("GET through hostfwd and the published port: %v\n%s", err, v.ConsoleTail(40))
		}
		if !strings.HasPrefix(body, testimage.Greeting) || !strings.Contains(body, "(host web)") {
			t.Errorf("answer %q, want %q from host web", body, testimage.Greeting)
		}
		noContainerErrors(t, v)

		if err := v.Powerdown(); err != nil {
			t.Fatal(err)
		}
		if _, err := v.WaitFor(ctx, regexp.MustCompile(regexp.QuoteMeta("reboot: Power down"))); err != nil {
			t.Fatal(err)
		}
		// (They stop in parallel: their lines come in any order.)
		for _, name := range []string{"web", "api"} {
			if _, ok := v.Find(regexp.MustCompile(`container ` + name + `: stopped`)); !ok {
				t.Errorf("container %s not reported stopped", name)
			}
		}
		noContainerErrors(t, v)
	})
}

// TestNoNetworkDeviceContainers: a machine with no network device at all
// starts its network_mode none container, and a bridged one too (the
// bridge needs no NIC).
func TestNoNetworkDeviceContainers(t *testing.T) {
	forEachMachine(t, []vm.Machine{vm.MicroVM}, func(t *testing.T, m vm.Machine) {
		v := bootContainers(t, vm.Config{Machine: m, MemoryMB: 768, NoNetwork: true}, map[string]string{
			"isolated": "image: " + bridgeImage + "\nnetwork_mode: none\nstop_grace_period: 5s\n",
			"bridged":  "image: " + bridgeImage + "\nports: [\"8080:8080\"]\nstop_grace_period: 5s\n",
		})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		waitReady(ctx, t, v, "isolated")
		waitReady(ctx, t, v, "bridged")
		noContainerErrors(t, v)
	})
}
