// Package initramfs assembles a bootable initramfs (a newc cpio archive,
// optionally compressed) without root privileges: photon-init as /init,
// the kernel modules a VM needs with a trimmed module index, and overlay
// directories. Every entry is owned by 0:0 whoever builds it, paths are
// sorted and mtimes fixed, so the same inputs give byte-identical archives.
//
// # Layout
//
// The skeleton is /dev (with /dev/console, char 5,1, mode 0600, so the
// kernel has a console for /init before devtmpfs is mounted), /proc, /sys,
// /run, /tmp (1777), /root (0700), /etc and /var; /init is the given binary
// (mode 0755). Modules from a /lib/modules/VERSION directory keep their
// relative paths under /lib/modules/VERSION, next to a modules.dep,
// modules.alias and modules.softdep trimmed to the included modules (all
// alias lines of an included module are kept: they are what coldplug
// matches) and the original modules.builtin and modules.builtin.modinfo.
// Overlays are copied last, a later one replacing an earlier entry at the
// same path.
//
// # Default modules
//
// Unless Options.NoDefaultModules is set, the module set is DefaultModules
// plus Options.Modules, closed over hard dependencies and softdeps (so
// ext4 brings crc32c_generic through "softdep ext4 pre: crypto-crc32c"):
//
//   - virtio transports and devices: virtio_pci, virtio_mmio, virtio_net,
//     virtio_blk, virtio_rng, virtio_console, virtio_scsi;
//   - filesystems: ext4, vfat, overlay (xfs and btrfs on request:
//     "--module xfs,btrfs");
//   - container networking: veth, bridge, nf_tables, nft_chain_nat,
//     nft_masq, nft_nat, nft_ct, nft_fib_ipv4 (published ports answer
//     only on local addresses), af_packet (for DHCP);
//   - shared folders: 9p, 9pnet_virtio, virtiofs;
//   - the ACPI power button: evdev, button.
//
// This is the set measured in the project's VM notes plus virtio_console,
// virtio_scsi, vfat and af_packet. virtio_scsi and af_packet are taken
// only if the kernel has them (af_packet is built into Debian's kernel, and
// built-in modules need nothing); any other name the kernel lacks is a
// warning, never a failure.
//
// On Debian's 6.1 kernel the closure is 50 modules, about 7.6 MiB. xfs and btrfs
// are left out of the default: with their dependencies they would add
// 8.3 MiB to every image (the kernel unpacks every byte at each boot) for
// filesystems few machines use; "--module xfs,btrfs" adds them.
//
// # Reuse
//
// Assemble returns a Builder holding all of the above; callers add their
// own entries (preloaded images, a photonctl symlink, a benchmark's
// different /init) with Builder.Add and friends before Builder.Write.
package initramfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/photon-init/photon-init/pkg/boot/kmod"
)

// DefaultModules returns the modules an initramfs gets unless
// Options.NoDefaultModules is set (see the package documentation).
func DefaultModules() []string {
	return []string{
		"virtio_pci", "virtio_mmio", "virtio_net", "virtio_blk", "virtio_rng", "virtio_console", "virtio_scsi",
		"ext4", "vfat", "overlay",
		"veth", "bridge", "nf_tables", "nft_chain_nat", "nft_masq", "nft_nat", "nft_ct", "nft_fib_ipv4", "af_packet",
		"9p", "9pnet_virtio", "virtiofs",
		"evdev", "button",
	}
}

// optionalDefault reports whether a default module is taken only when the
// kernel has it, without a warning otherwise.
func optionalDefault(name string) bool {
	switch name {
	case "virtio_scsi", "af_packet":
		return true
	}
	return false
}

// Options says what Assemble puts into the initramfs.
type Options struct {
	// Init is the binary installed as /init; "" means the running
	// executable.
	Init string
	// ModulesDir is a /lib/modules/VERSION directory to take modules
	// from; "" means no modules at all.
	ModulesDir string
	// Modules are extra module names or aliases; an element may hold
	// several, comma-separated.
	Modules []string
	// NoDefaultModules leaves DefaultModules out.
	NoDefaultModules bool
	// Entries are added after the skeleton, /init and the modules and
	// before the overlays, which may replace them (photon-init build
	// adds /bin/photonctl and its bash completion this way).
	Entries []Entry
	// Overlays are directories copied into the root, in order.
	Overlays []string
}

// Report describes what Assemble included.
type Report struct {
	// KernelVersion is the base name of Options.ModulesDir.
	KernelVersion string
	// Modules are the included modules' names, in load order.
	Modules []string
	// Warnings are problems that did not stop the build, such as a
	// requested module the kernel does not have.
	Warnings []string
}

// Assemble builds the initramfs described by opts into a new Builder, which
// the caller may extend before writing it.
func Assemble(ctx context.Context, opts Options) (*Builder, *Report, error) {
	b := NewBuilder()
	rep := &Report{}
	for _, d := range []struct {
		path string
		perm fs.FileMode
	}{
		{"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"run", 0o755},
		{"tmp", 0o777 | fs.ModeSticky}, {"root", 0o700}, {"etc", 0o755}, {"var", 0o755},
	} {
		if err := b.AddDir(d.path, d.perm); err != nil {
			return nil, nil, err
		}
	}
	if err := b.AddCharDevice("dev/console", 0o600, 5, 1); err != nil {
		return nil, nil, err
	}

	initPath := opts.Init
	if initPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, nil, fmt.Errorf("initramfs: find own executable for /init: %w", err)
		}
		initPath = exe
	}
	if err := b.AddFileFrom("init", 0o755, initPath); err != nil {
		return nil, nil, err
	}

	if opts.ModulesDir != "" {
		if err := addModules(ctx, b, rep, opts); err != nil {
			return nil, nil, err
		}
	}

	for _, e := range opts.Entries {
		if err := b.Add(e); err != nil {
			return nil, nil, err
		}
	}
	for _, dir := range opts.Overlays {
		if err := b.AddTree(ctx, dir, "/"); err != nil {
			return nil, nil, fmt.Errorf("overlay %s: %w", dir, err)
		}
	}
	return b, rep, ctx.Err()
}

// addModules adds the module closure and the trimmed index.
func addModules(ctx context.Context, b *Builder, rep *Report, opts Options) error {
	dir := filepath.Clean(opts.ModulesDir)
	ix, err := kmod.Open(dir)
	if err != nil {
		return fmt.Errorf("initramfs: modules: %w", err)
	}
	rep.KernelVersion = filepath.Base(dir)

	var want []string
	if !opts.NoDefaultModules {
		for _, m := range DefaultModules() {
			if optionalDefault(m) {
				if _, err := ix.Lookup(m); err != nil {
					continue
				}
			}
			want = append(want, m)
		}
	}
	for _, arg := range opts.Modules {
		for _, m := range strings.Split(arg, ",") {
			if m = strings.TrimSpace(m); m != "" {
				want = append(want, m)
			}
		}
	}
	mods, err := ix.Resolve(want...)
	for _, e := range unjoin(err) {
		var ue *kmod.UnknownModuleError
		if !errors.As(e, &ue) {
			return fmt.Errorf("initramfs: modules: %w", e)
		}
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("module %q not found in %s: left out", ue.Name, dir))
	}

	base := path.Join("lib/modules", rep.KernelVersion)
	names := make([]string, 0, len(mods))
	for _, m := range mods {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.AddFileFrom(path.Join(base, m.Path), 0o644, filepath.Join(dir, filepath.FromSlash(m.Path))); err != nil {
			return fmt.Errorf("module %s: %w", m.Name, err)
		}
		names = append(names, m.Name)
	}
	rep.Modules = names

	sub := ix.Subset(names)
	for _, f := range []string{kmod.DepFile, kmod.AliasFile, kmod.SoftdepFile} {
		data, err := sub.Encode(f)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		if err := b.AddFile(path.Join(base, f), 0o644, data); err != nil {
			return err
		}
	}
	for _, f := range []string{kmod.BuiltinFile, kmod.BuiltinModinfoFile} {
		src := filepath.Join(dir, f)
		if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := b.AddFileFrom(path.Join(base, f), 0o644, src); err != nil {
			return err
		}
	}
	return nil
}

// unjoin returns the errors joined in err (errors.Join), or err alone.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Write writes the archive to w, compressed with c.
func (b *Builder) Write(ctx context.Context, w io.Writer, c Compression) (WriteStats, error) {
	cw := &countingWriter{w: w}
	zw, err := compressor(cw, c)
	if err != nil {
		return WriteStats{}, fmt.Errorf("initramfs: %w", err)
	}
	bw := bufio.NewWriterSize(zw, 1<<20)
	st, err := b.WriteCPIO(ctx, bw)
	if err != nil {
		return st, err
	}
	if err := bw.Flush(); err != nil {
		return st, fmt.Errorf("initramfs: write: %w", err)
	}
	if err := zw.Close(); err != nil {
		return st, fmt.Errorf("initramfs: %s: %w", c, err)
	}
	st.Bytes = cw.n
	return st, nil
}
