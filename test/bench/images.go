package main

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/photon-init/photon-init/test/vm"
)

// runcInit is the busybox + runc variant's /init (see its comments).
//
//go:embed runc-init.sh
var runcInit []byte

// nicModules are the kernel modules each machine's network card needs, in
// load order (the facts in /work/shared/vm-testing.md): what the floor and
// the busybox init load, and nothing more.
var nicModules = map[vm.Machine][]string{
	vm.MicroVM: {"virtio_ring", "virtio", "virtio_mmio", "failover", "net_failover", "virtio_net"},
	vm.Q35:     {"virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring", "virtio", "virtio_pci", "failover", "net_failover", "virtio_net"},
}

// staticIP is the kernel's ip= for QEMU's user network, with the address
// its DHCP server would give: photon-init skips DHCP with it, as the floor
// and the busybox init do.
const staticIP = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off"

// serverRef is the server image's name in photon-init's initramfs.
const serverRef = "bench/server:1.0"

// serverName is the server container's name in photon-init.
const serverName = "server"

// bootImages are the initramfs images of the boot section.
type bootImages struct {
	// Photon is photon-init with the server container on host networking.
	Photon string
	// PhotonBridge is the same with the container bridged, port 8080
	// published.
	PhotonBridge string
	// Floor is floor-init and the server.
	Floor string
	// Runc is busybox, runc and the server's bundle.
	Runc string
	// ServerLayout is the server's OCI image layout.
	ServerLayout string
}

// buildBootImages builds every initramfs the boot section boots.
func (b *bench) buildBootImages(ctx context.Context) (*bootImages, error) {
	dir := filepath.Join(b.work, "boot")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	im := &bootImages{
		Photon:       filepath.Join(dir, "photon-init.img"),
		PhotonBridge: filepath.Join(dir, "photon-init-bridge.img"),
		Floor:        filepath.Join(dir, "floor.img"),
		Runc:         filepath.Join(dir, "busybox-runc.img"),
		ServerLayout: filepath.Join(dir, "server-oci"),
	}
	if err := vm.BuildServerImage(ctx, b.host.Repo, im.ServerLayout); err != nil {
		return nil, err
	}
	// The server's root filesystem, from the image's layer: the floor
	// runs its binary, the runc bundle is made of it.
	rootfs := filepath.Join(dir, "server-rootfs")
	if err := unpackLayout(ctx, im.ServerLayout, rootfs); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		out      string
		manifest string
	}{
		{im.Photon, "image: " + serverRef + "\nnetwork_mode: host\n"},
		{im.PhotonBridge, "image: " + serverRef + "\nports: [\"8080:8080\"]\n"},
	} {
		overlay := p.out + ".overlay"
		if err := os.RemoveAll(overlay); err != nil {
			return nil, err
		}
		if err := (vm.Overlay{"etc/photon/containers/" + serverName + ".yaml": p.manifest}).Write(overlay); err != nil {
			return nil, err
		}
		err := vm.BuildInitramfs(ctx, b.host, vm.BuildOptions{
			Binary: b.o.binary, Output: p.out, Compress: "none", OverlayDir: overlay,
			Images: []string{serverRef + "=oci:" + im.ServerLayout + ":" + vm.ServerImageTag},
		})
		if err != nil {
			return nil, err
		}
	}
	if err := b.buildFloor(ctx, im.Floor, rootfs); err != nil {
		return nil, err
	}
	if err := b.buildRunc(ctx, im.Runc, rootfs); err != nil {
		return nil, err
	}
	return im, nil
}

// buildFloor makes the floor's initramfs: floor-init as /init, the server
// at /bin/httpserver, the network card's modules and their lists.
func (b *bench) buildFloor(ctx context.Context, out, rootfs string) error {
	bin := filepath.Join(b.work, "floor-init")
	if err := goBuild(ctx, b.host.Repo, "./test/bench/floor-init", bin); err != nil {
		return err
	}
	overlay := out + ".overlay"
	if err := os.RemoveAll(overlay); err != nil {
		return err
	}
	if err := b.writeModuleLists(overlay); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(rootfs, "bin", "httpserver"), filepath.Join(overlay, "bin", "httpserver"), 0o755); err != nil {
		return err
	}
	return vm.BuildInitramfs(ctx, b.host, vm.BuildOptions{
		Output: out, Compress: "none", OverlayDir: overlay, Init: bin,
		NoDefaultModules: true, ExtraModules: allNICModules(),
	})
}

// buildRunc makes the busybox + runc initramfs: runc-init.sh as /init,
// Debian's busybox-static and runc (with the libraries ldd names), the
// server's OCI bundle in /bundle (its root filesystem and a config.json
// from "runc spec", adjusted), the network card's modules and their
// lists.
func (b *bench) buildRunc(ctx context.Context, out, rootfs string) error {
	overlay := out + ".overlay"
	if err := os.RemoveAll(overlay); err != nil {
		return err
	}
	if err := b.writeModuleLists(overlay); err != nil {
		return err
	}
	busybox, runc, err := busyboxRunc()
	if err != nil {
		return err
	}
	if err := copyFile(busybox, filepath.Join(overlay, "bin", "busybox"), 0o755); err != nil {
		return err
	}
	files, err := withLibraries(ctx, runc)
	if err != nil {
		return err
	}
	for _, f := range files {
		// Symbolic links are followed: the file lands where the
		// binary and the dynamic loader look for it.
		if err := copyFile(f, filepath.Join(overlay, f), 0o755); err != nil {
			return err
		}
	}
	bundle := filepath.Join(overlay, "bundle")
	if err := os.CopyFS(filepath.Join(bundle, "rootfs"), os.DirFS(rootfs)); err != nil {
		return fmt.Errorf("bundle rootfs: %w", err)
	}
	if err := os.Chmod(filepath.Join(bundle, "rootfs", "tmp"), 0o1777); err != nil {
		return err
	}
	if err := runcSpec(ctx, runc, bundle); err != nil {
		return err
	}
	script := filepath.Join(b.work, "runc-init.sh")
	if err := os.WriteFile(script, runcInit, 0o755); err != nil {
		return err
	}
	return vm.BuildInitramfs(ctx, b.host, vm.BuildOptions{
		Output: out, Compress: "none", OverlayDir: overlay, Init: script,
		NoDefaultModules: true, ExtraModules: allNICModules(),
	})
}

// busyboxRunc finds Debian's busybox-static and runc.
func busyboxRunc() (busybox, runc string, err error) {
	busybox, err = exec.LookPath("busybox")
	if err != nil {
		return "", "", fmt.Errorf("busybox (install busybox-static: make deps): %w", err)
	}
	runc = "/usr/sbin/runc"
	if _, err := os.Stat(runc); err != nil {
		if runc, err = exec.LookPath("runc"); err != nil {
			return "", "", fmt.Errorf("runc (install runc: make deps): %w", err)
		}
	}
	return busybox, runc, nil
}

// withLibraries returns bin and the shared objects ldd says it loads
// (libseccomp, libc, the dynamic loader), as absolute paths.
func withLibraries(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	files := []string{bin}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
		f := strings.Fields(sc.Text())
		for _, w := range f {
			if strings.HasPrefix(w, "/") {
				files = append(files, w)
				break
			}
		}
	}
	return files, nil
}

// runcSpec writes bundle/config.json: "runc spec" adjusted to run the
// server as the image says (entrypoint, PATH and PORT), without a
// terminal, on the machine's network (no network namespace, as
// photon-init's container with network_mode host).
func runcSpec(ctx context.Context, runc, bundle string) error {
	path := filepath.Join(bundle, "config.json")
	os.Remove(path)
	if out, err := exec.CommandContext(ctx, runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %w\n%s", err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec rspec.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("runc spec's config.json: %w", err)
	}
	spec.Process.Terminal = false
	spec.Process.Args = []string{"/bin/httpserver"}
	spec.Process.Env = []string{"PATH=/bin", "PORT=8080"}
	spec.Hostname = serverName
	var ns []rspec.LinuxNamespace
	for _, n := range spec.Linux.Namespaces {
		if n.Type != rspec.NetworkNamespace {
			ns = append(ns, n)
		}
	}
	spec.Linux.Namespaces = ns
	data, err = json.MarshalIndent(&spec, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// writeModuleLists writes etc/bench/modules.MACHINE under overlay: the
// network card's module files relative to the modules directory, in load
// order.
func (b *bench) writeModuleLists(overlay string) error {
	paths, err := modulePaths(b.host.Kernel.Modules)
	if err != nil {
		return err
	}
	for m, mods := range nicModules {
		var lines []string
		for _, name := range mods {
			p, ok := paths[name]
			if !ok {
				return fmt.Errorf("module %s is not in %s/modules.dep", name, b.host.Kernel.Modules)
			}
			lines = append(lines, p)
		}
		f := filepath.Join(overlay, "etc", "bench", "modules."+string(m))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// allNICModules is the union of nicModules, for "photon-init build
// --module".
func allNICModules() []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range vm.Machines() {
		for _, name := range nicModules[m] {
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	return out
}

// modulePaths maps module names (with '_') to their files relative to the
// modules directory, from modules.dep.
func modulePaths(modulesDir string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p, _, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		base := filepath.Base(p)
		name, _, _ := strings.Cut(base, ".ko")
		out[strings.ReplaceAll(name, "-", "_")] = p
	}
	return out, sc.Err()
}

// unpackLayout extracts the layers of the image tagged in an OCI layout
// into dir with tar (the server image has no whiteouts).
func unpackLayout(ctx context.Context, layout, dir string) error {
	manifest, err := readManifest(layout)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, l := range manifest.Layers {
		blob := filepath.Join(layout, "blobs", l.Digest.Algorithm().String(), l.Digest.Encoded())
		if out, err := exec.CommandContext(ctx, "tar", "-xzf", blob, "-C", dir).CombinedOutput(); err != nil {
			return fmt.Errorf("tar -x %s: %w\n%s", blob, err, out)
		}
	}
	return nil
}

// readManifest reads the manifest of the first image in a layout's
// index.
func readManifest(layout string) (*ocispec.Manifest, error) {
	var index ocispec.Index
	if err := readJSON(filepath.Join(layout, ocispec.ImageIndexFile), &index); err != nil {
		return nil, err
	}
	if len(index.Manifests) == 0 {
		return nil, fmt.Errorf("%s: empty index", layout)
	}
	d := index.Manifests[0].Digest
	var m ocispec.Manifest
	if err := readJSON(filepath.Join(layout, "blobs", d.Algorithm().String(), d.Encoded()), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// readJSON decodes a JSON file.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// copyFile copies src (following links) to dst with perm, creating dst's
// directory.
func copyFile(src, dst string, perm os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, perm)
}

// goBuild compiles a static Go command of the repository (CGO off,
// stripped).
func goBuild(ctx context.Context, repo, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}
