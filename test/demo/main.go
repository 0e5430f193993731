// Command demo boots photon-init in QEMU with the serial console on the
// terminal: it builds the demo container image (a small static HTTP server
// as an OCI image layout), then an initramfs from bin/photon-init with
// configs/ as the overlay (init.yaml and the web container's manifest) and
// the image preloaded as demo/web:1.0, and boots it on q35 with the guest's
// port 8080 forwarded to the host. Ctrl-A X quits QEMU; Ctrl-A C switches
// between the console and QEMU's monitor. "make demo" runs it after
// installing the dependencies and building.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/photon-init/photon-init/test/vm"
)

func main() {
	machine := flag.String("machine", string(vm.Q35), "machine type: q35 or microvm")
	overlay := flag.String("overlay", "", "overlay directory (default: configs/ in the repository, if present)")
	ports := flag.String("ports", "8080", "comma-separated guest TCP ports to forward from 127.0.0.1")
	kargs := flag.String("append", "", "extra kernel arguments, e.g. photon.debug")
	flag.Parse()
	if err := run(context.Background(), vm.Machine(*machine), *overlay, *ports, *kargs); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run builds the demo initramfs and boots it interactively.
func run(ctx context.Context, machine vm.Machine, overlay, ports, kargs string) error {
	host, err := vm.DetectHost(ctx, vm.HostOptions{})
	if err != nil {
		return err
	}
	if overlay == "" {
		if st, err := os.Stat(filepath.Join(host.Repo, "configs")); err == nil && st.IsDir() {
			overlay = filepath.Join(host.Repo, "configs")
		}
	}
	dir := filepath.Join(host.Repo, "out", "demo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("demo directory: %w", err)
	}
	layout := filepath.Join(dir, "web-oci")
	if err := vm.BuildServerImage(ctx, host.Repo, layout); err != nil {
		return err
	}
	img := filepath.Join(dir, "initramfs.img")
	build := vm.BuildOptions{
		Output: img, OverlayDir: overlay, Compress: "lz4",
		Images: []string{"demo/web:1.0=oci:" + layout + ":" + vm.ServerImageTag},
	}
	if err := vm.BuildInitramfs(ctx, host, build); err != nil {
		return err
	}
	cfg := vm.Config{Host: host, Machine: machine, Initramfs: img, KernelArgs: strings.Fields(kargs)}
	for _, p := range strings.Split(ports, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("-ports: %q is not a port number", p)
		}
		cfg.GuestPorts = append(cfg.GuestPorts, n)
	}
	from := "no overlay"
	if overlay != "" {
		from = "overlay " + overlay
	}
	fmt.Fprintf(os.Stderr, "demo: booting %s (%s) on %s with %s, kernel %s\n", img, from, machine, host.Accel, host.Kernel.Release)
	fmt.Fprintln(os.Stderr, "demo: Ctrl-A X quits QEMU, Ctrl-A C toggles QEMU's monitor (system_powerdown there presses the power button)")
	return vm.RunInteractive(ctx, cfg)
}
