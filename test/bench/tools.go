package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/klauspost/compress/gzip"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/photon-init/photon-init/test/bench/internal/ocilayout"
	pr "github.com/photon-init/photon-init/test/bench/internal/proberesult"
	"github.com/photon-init/photon-init/test/vm"
)

// toolsRef is the tools image's name in the memory and scale initramfs.
const toolsRef = "bench/tools:1.0"

// toolsApplets are the busybox applets the tools image links in /bin.
var toolsApplets = []string{"sh", "sleep", "mkfifo", "cat", "true", "false"}

// buildToolsImage writes the tools image as an OCI layout in dir: Debian's
// busybox-static (with links for the applets the containers use) and the
// probe (test/bench/probe), in one layer, tagged "latest".
func (b *bench) buildToolsImage(ctx context.Context, dir string) error {
	probe := filepath.Join(b.work, "probe")
	if err := goBuild(ctx, b.host.Repo, "./test/bench/probe", probe); err != nil {
		return err
	}
	busybox, _, err := busyboxRunc()
	if err != nil {
		return err
	}
	var files []ocilayout.File
	files = append(files, ocilayout.File{Name: "bin/", Dir: true, Mode: 0o755}, ocilayout.File{Name: "tmp/", Dir: true, Mode: 0o1777})
	for _, f := range []struct{ name, src string }{{"bin/busybox", busybox}, {"bin/probe", probe}} {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return err
		}
		files = append(files, ocilayout.File{Name: f.name, Mode: 0o755, Data: data})
	}
	for _, a := range toolsApplets {
		files = append(files, ocilayout.File{Name: "bin/" + a, Link: "busybox", Mode: 0o777})
	}
	w, err := ocilayout.Create(dir)
	if err != nil {
		return err
	}
	layer, err := w.Layer(gzip.DefaultCompression, ocilayout.Files(files))
	if err != nil {
		return err
	}
	return w.Finish("latest", ocispec.ImageConfig{Env: []string{"PATH=/bin"}}, []ocilayout.Layer{layer})
}

// buildToolsInitramfs builds photon-init's initramfs with the tools image
// preloaded and the given manifests (file name to content).
func (b *bench) buildToolsInitramfs(ctx context.Context, out, layout string, manifests map[string]string) error {
	overlay := out + ".overlay"
	if err := os.RemoveAll(overlay); err != nil {
		return err
	}
	files := vm.Overlay{}
	for name, m := range manifests {
		files["etc/photon/containers/"+name+".yaml"] = m
	}
	if err := files.Write(overlay); err != nil {
		return err
	}
	return vm.BuildInitramfs(ctx, b.host, vm.BuildOptions{
		Binary: b.o.binary, Output: out, Compress: "none", OverlayDir: overlay,
		Images: []string{toolsRef + "=oci:" + layout + ":latest"},
	})
}

// probeManifest is the probe container's manifest with its arguments.
func probeManifest(args ...string) string {
	cmd, _ := json.Marshal(append([]string{"/bin/probe"}, args...))
	return "image: " + toolsRef + "\nnetwork_mode: host\n" +
		"volumes: [\"/proc:/hostproc:ro\", \"/run/photon:/hostrun\", \"ctl:/ctl\"]\n" +
		"command: " + string(cmd) + "\n"
}

// sleeperManifest is a container that sleeps.
func sleeperManifest(network string) string {
	return "image: " + toolsRef + "\nnetwork_mode: " + network + "\n" +
		"command: [\"/bin/busybox\", \"sleep\", \"999999999\"]\n"
}

// probeLine matches the probe's result or error line.
var probeLine = regexp.MustCompile(regexp.QuoteMeta(pr.Prefix) + `|` + regexp.QuoteMeta(pr.ErrorPrefix))

// waitProbe waits for the probe's result line and decodes it.
func waitProbe(ctx context.Context, v *vm.VM) (*pr.Result, error) {
	l, err := v.WaitForLine(ctx, probeLine)
	if err != nil {
		return nil, err
	}
	if _, msg, ok := strings.Cut(l.Text, pr.ErrorPrefix); ok {
		return nil, fmt.Errorf("probe: %s; console ends:\n%s", msg, v.ConsoleTail(40))
	}
	_, js, _ := strings.Cut(l.Text, pr.Prefix)
	var r pr.Result
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		return nil, fmt.Errorf("probe's result %q: %w", js, err)
	}
	return &r, nil
}
