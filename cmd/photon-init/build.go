package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/photon-init/photon-init/pkg/api/ctl"
	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/image/aci"
	"github.com/photon-init/photon-init/pkg/containers/image/preload"
	"github.com/photon-init/photon-init/pkg/containers/image/registry"
	"github.com/photon-init/photon-init/pkg/initramfs"
)

// imageSources are the image sources beyond the built-in local ones
// (oci:, oci-archive:, docker-archive:) that "build --image" resolves
// through: registry references, with the builder's Docker credentials
// ($DOCKER_CONFIG/config.json or ~/.docker/config.json; none means
// anonymous pulls), and aci: images.
func imageSources(insecure []string) ([]image.Option, error) {
	auth := filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json")
	if os.Getenv("DOCKER_CONFIG") == "" {
		home, _ := os.UserHomeDir()
		auth = filepath.Join(home, ".docker", "config.json")
	}
	pull, err := registry.NewSource(registry.Options{AuthFile: auth, Insecure: insecure})
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return []image.Option{
		image.WithSource(image.TransportRegistry, pull),
		image.WithSource(image.TransportACI, aci.NewSource),
	}, nil
}

// cmdBuild is "photon-init build": it assembles a bootable initramfs.
func cmdBuild(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runBuild(ctx, args, os.Stdout, os.Stderr)
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// runBuild implements cmdBuild with its output streams given; it returns 2
// for usage errors and 1 for failures.
func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("photon-init build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		out        = fs.String("o", "", "write the initramfs to `FILE` (required)")
		modules    = fs.String("modules", "", "take kernel modules from `DIR`, a /lib/modules/VERSION directory (default: no modules)")
		noDefault  = fs.Bool("no-default-modules", false, "leave out the default VM module set")
		compress   = fs.String("compress", "none", "compression: none, gzip, lz4 (legacy frames, as the kernel needs) or zstd")
		initBin    = fs.String("init", "", "install `FILE` as /init (default: this executable)")
		imageStore = fs.String("image-store", preload.DefaultStoreDir, "the image store's `DIR` inside the initramfs (for --image)")
		extra      listFlag
		overlays   listFlag
		images     listFlag
		insecure   listFlag
	)
	fs.Var(&extra, "module", "also include module `NAME` or alias (repeatable, or comma-separated)")
	fs.Var(&overlays, "overlay", "copy `DIR` into the root (repeatable; later ones win)")
	fs.Var(&insecure, "insecure-registry", "reach registry `HOST[:PORT]` over plain HTTP for --image (repeatable)")
	fs.Var(&images, "image", "preload image `[NAME=]REF`, unpacked into the image store, recorded as NAME (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: photon-init build -o FILE [--modules DIR] [--module NAME]... [--no-default-modules]
                         [--overlay DIR]... [--compress none|gzip|lz4|zstd] [--init FILE]
                         [--image [NAME=]REF]... [--image-store DIR] [--insecure-registry HOST]...

Assembles a bootable initramfs (newc cpio): this binary (or --init) as /init,
/dev/console and the API mount points, the kernel modules a VM needs from
--modules with a trimmed module index, the overlay directories, and the
--image images already unpacked in the image store (--image-store), so the
first boot starts their containers without unpacking; manifests refer to
such an image as NAME (REF when no NAME= is given), for instance
--image app:1.0=oci:out/app:1.0. Files are owned by root (image files by
their owners in the image) and the output is reproducible; no root is
needed.

default modules (with --modules): `+strings.Join(initramfs.DefaultModules(), " ")+`

flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "photon-init build: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "photon-init build: -o FILE is required")
		fs.Usage()
		return 2
	}
	comp, err := initramfs.ParseCompression(*compress)
	if err != nil {
		fmt.Fprintf(stderr, "photon-init build: --compress: %v\n", err)
		return 2
	}
	if (len(extra) > 0 || *noDefault) && *modules == "" {
		fmt.Fprintln(stderr, "photon-init build: --module and --no-default-modules need --modules DIR")
		return 2
	}

	b, rep, err := initramfs.Assemble(ctx, initramfs.Options{
		Init:             *initBin,
		ModulesDir:       *modules,
		Modules:          extra,
		NoDefaultModules: *noDefault,
		Entries:          photonctlEntries(),
		Overlays:         overlays,
	})
	if err != nil {
		fmt.Fprintf(stderr, "photon-init build: %v\n", err)
		return 1
	}
	var specs []preload.Spec
	for _, arg := range images {
		spec, err := preload.ParseSpec(arg)
		if err != nil {
			fmt.Fprintf(stderr, "photon-init build: --image: %v\n", err)
			return 2
		}
		specs = append(specs, spec)
	}
	if len(specs) > 0 {
		spool, err := os.MkdirTemp("", "photon-init-build-")
		if err != nil {
			fmt.Fprintf(stderr, "photon-init build: %v\n", err)
			return 1
		}
		defer os.RemoveAll(spool)
		// The store only resolves references here; its root is scratch.
		sources, err := imageSources(insecure)
		if err != nil {
			fmt.Fprintf(stderr, "photon-init build: %v\n", err)
			return 1
		}
		store, err := image.Open(filepath.Join(spool, "store"), sources...)
		if err != nil {
			fmt.Fprintf(stderr, "photon-init build: %v\n", err)
			return 1
		}
		spoolFiles := filepath.Join(spool, "files")
		if err := os.Mkdir(spoolFiles, 0o700); err != nil {
			fmt.Fprintf(stderr, "photon-init build: %v\n", err)
			return 1
		}
		results, err := preload.Add(ctx, b, store, specs, preload.Options{StoreDir: *imageStore, Spool: spoolFiles})
		if err != nil {
			fmt.Fprintf(stderr, "photon-init build: %v\n", err)
			return 1
		}
		for _, r := range results {
			fmt.Fprintf(stdout, "image %s: %s, %d layers, %d files, %s\n", r.Spec.Name, r.Digest, r.Layers, r.Entries, humanBytes(r.Bytes))
		}
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(stderr, "photon-init build: warning: %s\n", w)
	}
	st, err := writeAtomic(ctx, *out, func(w io.Writer) (initramfs.WriteStats, error) {
		return b.Write(ctx, w, comp)
	})
	if err != nil {
		fmt.Fprintf(stderr, "photon-init build: %v\n", err)
		return 1
	}
	size := fmt.Sprintf("%s (%s)", humanBytes(st.Bytes), comp)
	if comp != initramfs.None {
		size = fmt.Sprintf("%s (%s of %s)", humanBytes(st.Bytes), comp, humanBytes(st.CPIOBytes))
	}
	fmt.Fprintf(stdout, "%s: %d entries, %d modules, %s\n", *out, st.Entries, len(rep.Modules), size)
	return 0
}

// photonctlEntries are /bin/photonctl, a symlink to /init (started under
// that name, photon-init is photonctl), and photonctl's bash completion.
// An overlay may replace them.
func photonctlEntries() []initramfs.Entry {
	return []initramfs.Entry{
		{Path: "bin/photonctl", Mode: fs.ModeSymlink | 0o777, Linkname: "/init"},
		{Path: "usr/share/bash-completion/completions/photonctl", Mode: 0o644, Data: []byte(ctl.BashCompletion())},
	}
}

// writeAtomic writes a new file at path through write: into a temporary
// file in the same directory, renamed over path only once complete, so
// path is never seen half-written.
func writeAtomic(ctx context.Context, path string, write func(io.Writer) (initramfs.WriteStats, error)) (st initramfs.WriteStats, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return st, fmt.Errorf("create %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if st, err = write(f); err != nil {
		return st, fmt.Errorf("write %s: %w", path, err)
	}
	if err = ctx.Err(); err != nil {
		return st, fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return st, fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return st, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return st, fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	return st, nil
}

// humanBytes formats n as B, KiB or MiB.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
