package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/photon-init/photon-init/internal/testimage"
	"github.com/photon-init/photon-init/test/vm"
)

// guestRegistry is where the guest reaches the host's test registry
// through QEMU's guestfwd.
const guestRegistry = "10.0.2.100:5000"

// imageCase is one container of TestContainers: an image kind served by
// the test HTTP server on its own port.
type imageCase struct {
	name  string
	image string // the manifest's image: (paths inside the guest)
	port  int
}

// TestContainers boots a VM whose initramfs holds a manifest for each image
// kind — an OCI layout, an oci-archive, a docker-archive, an ACI, a plain
// rootfs, an image preloaded by "photon-init build --image" and one pulled
// from the host's test registry through guestfwd — each serving HTTP with
// host networking (network_mode: host) on its own port, beside a broken
// manifest and one naming a missing image. Every server must answer through QEMU's hostfwd, and
// only the two bad ones fail, each with its error on the console. The
// power button then stops the containers before the shutdown steps.
func TestContainers(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("boots a VM")
	}
	im := testimage.Build(t, "")
	reg := testimage.StartRegistry(t, testimage.RegistryOptions{})
	reg.Push(t, "oci:"+im.OCILayout+":"+testimage.Tag, "photon/app:1.0", false, "")

	overlay := t.TempDir()
	images := filepath.Join(overlay, "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		t.Fatal(err)
	}
	copyTree(t, im.OCILayout, filepath.Join(images, "oci"))
	copyTree(t, im.Rootfs, filepath.Join(images, "rootfs"))
	copyFile(t, im.OCIArchive, filepath.Join(images, "app.oci.tar"))
	copyFile(t, im.DockerArchive, filepath.Join(images, "app.docker.tar"))
	copyFile(t, testimage.ServerACI(t, im, testimage.ACIGzip), filepath.Join(images, "app.aci"))

	cases := []imageCase{
		{"oci", "oci:/images/oci:" + testimage.Tag, 8081},
		{"ociarchive", "oci-archive:/images/app.oci.tar:" + testimage.Tag, 8082},
		{"docker", "docker-archive:/images/app.docker.tar", 8083},
		{"aci", "aci:/images/app.aci", 8084},
		{"rootfs", "rootfs:/images/rootfs", 8085},
		{"registry", guestRegistry + "/photon/app:1.0", 8086},
		{"preloaded", "preloaded/app:1.0", 8087},
	}
	files := vm.Overlay{
		"etc/photon/init.yaml": "registries:\n  insecure: [\"" + guestRegistry + "\"]\n",
		// Line 3 misspells a field.
		"etc/photon/containers/broken.yaml":  "# e2e: a broken manifest\nimage: oci:/images/oci:latest\ncomand: [/bin/httpserver]\n",
		"etc/photon/containers/missing.yaml": "image: oci:/images/nothing-here:latest\n",
	}
	var ports []int
	for _, c := range cases {
		m := fmt.Sprintf("# e2e: the %s image kind\nimage: %q\nnetwork_mode: host\nenvironment:\n  PORT: \"%d\"\n", c.name, c.image, c.port)
		if c.name == "rootfs" {
			// A plain root filesystem has no image config.
			m += "command: [" + testimage.Entrypoint + "]\n"
		}
		files["etc/photon/containers/"+c.name+".yaml"] = m
		ports = append(ports, c.port)
	}

	host := vm.HostT(t)
	img := vm.InitramfsT(t, host, files, vm.BuildOptions{
		Compress:   "none",
		OverlayDir: overlay,
		Images:     []string{"preloaded/app:1.0=oci:" + im.OCILayout + ":" + testimage.Tag},
	})
	v := vm.StartT(t, vm.Config{
		Host: host, Machine: vm.Q35, Initramfs: img, MemoryMB: 768,
		GuestPorts:    ports,
		GuestForwards: []vm.GuestForward{{Guest: guestRegistry, Host: reg.Host}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := v.WaitFor(ctx, vm.BootComplete); err != nil {
		t.Fatal(err)
	}
	// The containers start in parallel: their lines come in any order.
	for _, c := range cases {
		ready := regexp.MustCompile(`^\[` + c.name + `\] ` + regexp.QuoteMeta(testimage.ReadyLine))
		l, err := waitFind(ctx, v, ready)
		if err != nil {
			t.Fatalf("container %s (%s) never said it listens: %v\n%s", c.name, c.image, err, v.ConsoleTail(40))
		}
		t.Logf("%s: %q at %v", c.name, l.Text, l.At.Round(time.Millisecond))
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, c := range cases {
		body, err := get(ctx, client, "http://"+v.Addr(c.port)+"/")
		if err != nil {
			t.Errorf("container %s: %v", c.name, err)
			continue
		}
		if !strings.HasPrefix(body, testimage.Greeting) {
			t.Errorf("container %s answered %q, want %q...", c.name, body, testimage.Greeting)
		}
	}

	// Exactly the two bad containers fail, each with a clear error.
	for _, want := range []string{
		`ERROR container broken: /etc/photon/containers/broken\.yaml:3: field comand: unknown field`,
		`ERROR container missing: image oci:/images/nothing-here:latest: .*no such file or directory`,
	} {
		if _, ok := v.Find(regexp.MustCompile(want)); !ok {
			t.Errorf("no console line matching %q", want)
		}
	}
	for _, l := range v.Lines() {
		if strings.Contains(l.Text, "ERROR container ") &&
			!strings.Contains(l.Text, "container broken:") && !strings.Contains(l.Text, "container missing:") {
			t.Errorf("unexpected container error: %s", l.Text)
		}
	}
	// The preloaded image was not unpacked at boot.
	if l, ok := v.Find(regexp.MustCompile(`(?i)unpack.*preloaded/app`)); ok {
		t.Errorf("the preloaded image was unpacked at boot: %s", l.Text)
	}

	if err := v.Powerdown(); err != nil {
		t.Fatal(err)
	}
	for _, step := range append([]string{"stop-containers"}, shutdownSteps()...) {
		if _, err := v.WaitFor(ctx, regexp.MustCompile(`shutdown: `+regexp.QuoteMeta(step)+`\b`)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		if _, ok := v.Find(regexp.MustCompile(`container ` + c.name + `: stopped`)); !ok {
			t.Errorf("container %s was not reported stopped at shutdown", c.name)
		}
	}
	if _, err := v.WaitFor(ctx, regexp.MustCompile(regexp.QuoteMeta("reboot: Power down"))); err != nil {
		t.Fatal(err)
	}
}

// waitFind waits until a console line anywhere matches re.
func waitFind(ctx context.Context, v *vm.VM, re *regexp.Regexp) (vm.Line, error) {
	for {
		if l, ok := v.Find(re); ok {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return vm.Line{}, fmt.Errorf("no console line matching %q: %w", re, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// get fetches url and returns the body of a 200 answer.
func get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return string(body), nil
}

// copyTree copies a directory as it is (modes, symlinks, hardlinks).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, out)
	}
}

// copyFile copies one file.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s %s: %v\n%s", src, dst, err, out)
	}
}
