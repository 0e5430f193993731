package main

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/photon-init/photon-init/test/vm"
)

// SizeReport is the size section's result, in bytes.
type SizeReport struct {
	// Binary is bin/photon-init as "make build" makes it (static,
	// stripped, with seccomp).
	Binary int64 `json:"photon_init_bytes"`
	// BinaryStripped says the binary has no symbol table.
	BinaryStripped bool `json:"photon_init_stripped"`
	// BinaryNoSeccomp is the same build without the seccomp tag.
	BinaryNoSeccomp int64 `json:"photon_init_no_seccomp_bytes,omitempty"`
	// DemoInitramfs is the demo's initramfs (lz4, as "make demo" builds
	// it); DemoInitramfsRaw the same uncompressed.
	DemoInitramfs    int64 `json:"demo_initramfs_bytes"`
	DemoInitramfsRaw int64 `json:"demo_initramfs_uncompressed_bytes"`
	// Busybox is Debian's busybox-static binary.
	Busybox int64 `json:"busybox_bytes"`
	// Runc is Debian's runc binary; RuncLibs its shared libraries
	// (libseccomp, libc, the dynamic loader), by path.
	Runc     int64            `json:"runc_bytes"`
	RuncLibs map[string]int64 `json:"runc_libs_bytes"`
}

// buildTagsNoSeccomp are the Makefile's BUILD_TAGS without seccomp (keep
// the two in step).
const buildTagsNoSeccomp = "netgo osusergo nethttpomithttp2 runc_nocriu runc_nosd"

// runSize measures the sizes.
func (b *bench) runSize(ctx context.Context) (*SizeReport, error) {
	bin := vm.PhotonBinary(b.host.Repo)
	rep := &SizeReport{Binary: fileSize(bin), RuncLibs: map[string]int64{}}
	if f, err := elf.Open(bin); err == nil {
		rep.BinaryStripped = f.Section(".symtab") == nil
		f.Close()
	}
	dir := filepath.Join(b.work, "size")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	noSeccomp := filepath.Join(dir, "photon-init-no-seccomp")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", buildTagsNoSeccomp,
		"-ldflags", "-s -w -extldflags -static", "-o", noSeccomp, "./cmd/photon-init")
	cmd.Dir = b.host.Repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.logf("size: the build without seccomp failed: %v\n%s", err, out)
	} else {
		rep.BinaryNoSeccomp = fileSize(noSeccomp)
	}
	// The demo's initramfs, as test/demo builds it.
	layout := filepath.Join(dir, "web-oci")
	if err := vm.BuildServerImage(ctx, b.host.Repo, layout); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		compress string
		out      *int64
	}{{"lz4", &rep.DemoInitramfs}, {"none", &rep.DemoInitramfsRaw}} {
		img := filepath.Join(dir, "demo-"+c.compress+".img")
		err := vm.BuildInitramfs(ctx, b.host, vm.BuildOptions{
			Output: img, OverlayDir: filepath.Join(b.host.Repo, "configs"), Compress: c.compress,
			Images: []string{"demo/web:1.0=oci:" + layout + ":" + vm.ServerImageTag},
		})
		if err != nil {
			return nil, err
		}
		*c.out = fileSize(img)
	}
	busybox, runc, err := busyboxRunc()
	if err != nil {
		return nil, err
	}
	rep.Busybox, rep.Runc = fileSize(busybox), fileSize(runc)
	files, err := withLibraries(ctx, runc)
	if err != nil {
		return nil, err
	}
	for _, f := range files[1:] {
		rep.RuncLibs[f] = fileSize(f) // os.Stat follows the links
	}
	return rep, nil
}

// runcTotal is runc with its libraries.
func (r *SizeReport) runcTotal() int64 {
	n := r.Runc
	for _, s := range r.RuncLibs {
		n += s
	}
	return n
}

// sizeTable renders the size section.
func sizeTable(r *SizeReport) *table {
	t := newTable("what", "size", "note")
	stripped := "stripped"
	if !r.BinaryStripped {
		stripped = "NOT stripped"
	}
	t.add("bin/photon-init", mib(r.Binary), fmt.Sprintf("static, %s, tags %s seccomp (make build)", stripped, buildTagsNoSeccomp))
	if r.BinaryNoSeccomp > 0 {
		t.add("photon-init without seccomp", mib(r.BinaryNoSeccomp), fmt.Sprintf("the same build without the seccomp tag (libseccomp linked in: %s)", mib(r.Binary-r.BinaryNoSeccomp)))
	}
	t.add("demo initramfs (lz4)", mib(r.DemoInitramfs), "make demo's: photon-init, default modules, configs/, the web image preloaded")
	t.add("demo initramfs (uncompressed)", mib(r.DemoInitramfsRaw), "the same with --compress none")
	t.add("busybox (busybox-static)", mib(r.Busybox), "Debian's, static")
	t.add("runc", mib(r.Runc), "Debian's, dynamically linked")
	t.add("runc + its shared libraries", mib(r.runcTotal()), fmt.Sprintf("%d libraries (libseccomp, libc, ld.so)", len(r.RuncLibs)))
	t.add("busybox + runc + libraries", mib(r.Busybox+r.runcTotal()), "the baseline's userland")
	return t
}
