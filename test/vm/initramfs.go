package vm

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Overlay is a set of files to put into an initramfs: path relative to the
// root (e.g. "etc/photon/init.yaml") to content.
type Overlay map[string]string

// Write creates the overlay's files under dir.
func (o Overlay) Write(dir string) error {
	for name, content := range o {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("overlay %s: %w", name, err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("overlay %s: %w", name, err)
		}
	}
	return nil
}

// BuildOptions are the arguments of "photon-init build".
type BuildOptions struct {
	// Binary is the photon-init binary (default: bin/photon-init in the
	// repository).
	Binary string
	// Output is the initramfs to write; required.
	Output string
	// Modules is the modules directory (default: the host kernel's).
	Modules string
	// OverlayDir is copied into the initramfs (--overlay).
	OverlayDir string
	// Compress is none, gzip, lz4 or zstd (default: photon-init's).
	Compress string
	// Init is a binary to use as /init instead of photon-init (--init).
	Init string
	// ExtraModules are added with --module.
	ExtraModules []string
	// NoDefaultModules passes --no-default-modules.
	NoDefaultModules bool
	// Images are preloaded with --image ([NAME=]REF).
	Images []string
	// InsecureRegistries are passed with --insecure-registry.
	InsecureRegistries []string
}

// PhotonBinary returns the path of the photon-init binary that "make
// build" writes in repo.
func PhotonBinary(repo string) string { return filepath.Join(repo, "bin", "photon-init") }

// BuildInitramfs runs "photon-init build" for host's kernel.
func BuildInitramfs(ctx context.Context, host *Host, opts BuildOptions) error {
	if opts.Output == "" {
		return fmt.Errorf("photon-init build: no output file")
	}
	if opts.Binary == "" {
		opts.Binary = PhotonBinary(host.Repo)
	}
	if opts.Modules == "" {
		opts.Modules = host.Kernel.Modules
	}
	args := []string{"build", "-o", opts.Output, "--modules", opts.Modules}
	if opts.OverlayDir != "" {
		args = append(args, "--overlay", opts.OverlayDir)
	}
	if opts.Compress != "" {
		args = append(args, "--compress", opts.Compress)
	}
	if opts.Init != "" {
		args = append(args, "--init", opts.Init)
	}
	for _, m := range opts.ExtraModules {
		args = append(args, "--module", m)
	}
	if opts.NoDefaultModules {
		args = append(args, "--no-default-modules")
	}
	for _, im := range opts.Images {
		args = append(args, "--image", im)
	}
	for _, r := range opts.InsecureRegistries {
		args = append(args, "--insecure-registry", r)
	}
	cmd := exec.CommandContext(ctx, opts.Binary, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", opts.Binary, strings.Join(args, " "), err, out)
	}
	return nil
}

// BuildPhoton builds bin/photon-init in repo with "make build", so tests
// and benchmarks always run the current code.
func BuildPhoton(ctx context.Context, repo string) error {
	cmd := exec.CommandContext(ctx, "make", "-C", repo, "--no-print-directory", "build")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("make build: %w\n%s", err, out)
	}
	return nil
}

// BuildBaseline compiles the benchmark's baseline init
// (test/bench/baseline-init) as a static binary at out.
func BuildBaseline(ctx context.Context, repo, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./test/bench/baseline-init")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building baseline-init: %w\n%s", err, b)
	}
	return nil
}

// CPIO writes an uncompressed initramfs in the kernel's "newc" format. It
// is for images photon-init build does not make, such as the baseline's
// minimal one; entries are written in the order added, so add parents
// before their children.
type CPIO struct {
	w     *bufio.Writer
	ino   uint32
	err   error
	names map[string]bool
}

// NewCPIO starts an archive on w; call Close to finish it.
func NewCPIO(w io.Writer) *CPIO {
	return &CPIO{w: bufio.NewWriter(w), ino: 1, names: map[string]bool{}}
}

// File types of cpio entries (the S_IFMT bits of the mode).
const (
	cpioDir  = 0o040000
	cpioFile = 0o100000
	cpioChr  = 0o020000
	cpioType = 0o170000
)

// Dir adds a directory.
func (c *CPIO) Dir(name string, perm os.FileMode) {
	c.entry(name, cpioDir|uint32(perm.Perm()), 0, 0, nil)
}

// File adds a regular file with the given content.
func (c *CPIO) File(name string, perm os.FileMode, content []byte) {
	c.entry(name, cpioFile|uint32(perm.Perm()), 0, 0, content)
}

// CharDev adds a character device node, e.g. dev/console (5, 1).
func (c *CPIO) CharDev(name string, perm os.FileMode, major, minor uint32) {
	c.entry(name, cpioChr|uint32(perm.Perm()), major, minor, nil)
}

// Tree adds the regular files and directories under src at the archive's
// root, in lexical order, keeping their permissions.
func (c *CPIO) Tree(src string) error {
	var paths []string
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != src {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cpio tree %s: %w", src, err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return fmt.Errorf("cpio tree: %w", err)
		}
		rel = filepath.ToSlash(rel)
		info, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("cpio tree: %w", err)
		}
		switch {
		case info.IsDir():
			c.Dir(rel, info.Mode())
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("cpio tree: %w", err)
			}
			c.File(rel, info.Mode(), data)
		default:
			return fmt.Errorf("cpio tree: %s: only files and directories are supported", p)
		}
	}
	return nil
}

// entry writes one header, name and body.
func (c *CPIO) entry(name string, mode, rmajor, rminor uint32, body []byte) {
	if c.err != nil {
		return
	}
	name = strings.TrimPrefix(filepath.ToSlash(name), "/")
	if c.names[name] {
		c.err = fmt.Errorf("cpio: %s added twice", name)
		return
	}
	c.names[name] = true
	nlink := uint32(1)
	if mode&cpioType == cpioDir {
		nlink = 2
	}
	c.write(name, c.ino, mode, nlink, rmajor, rminor, body)
	c.ino++
}

// write emits a newc record; see the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst.
func (c *CPIO) write(name string, ino, mode, nlink, rmajor, rminor uint32, body []byte) {
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(body), 0, 0, rmajor, rminor, len(name)+1, 0)
	c.put([]byte(hdr))
	c.put([]byte(name))
	c.put([]byte{0})
	c.pad(len(hdr) + len(name) + 1)
	c.put(body)
	c.pad(len(body))
}

// put writes b, keeping the first error.
func (c *CPIO) put(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

// pad aligns the output to 4 bytes after n bytes.
func (c *CPIO) pad(n int) {
	if r := n % 4; r != 0 {
		c.put(make([]byte, 4-r))
	}
}

// Close writes the trailer and flushes; it returns the first error of any
// call.
func (c *CPIO) Close() error {
	c.write("TRAILER!!!", 0, 0, 1, 0, 0, nil)
	if c.err == nil {
		c.err = c.w.Flush()
	}
	if c.err != nil {
		return fmt.Errorf("writing cpio: %w", c.err)
	}
	return nil
}

// WriteMinimalInitramfs writes an uncompressed initramfs holding only
// init as /init, /dev/console, /proc and /sys: what a static init needs to
// print on the console.
func WriteMinimalInitramfs(out, init string) error {
	data, err := os.ReadFile(init)
	if err != nil {
		return fmt.Errorf("minimal initramfs: %w", err)
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("minimal initramfs: %w", err)
	}
	c := NewCPIO(f)
	c.Dir("dev", 0o755)
	c.CharDev("dev/console", 0o600, 5, 1)
	c.Dir("proc", 0o555)
	c.Dir("sys", 0o555)
	c.File("init", 0o755, data)
	err = c.Close()
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("minimal initramfs: %w", cerr)
	}
	return err
}
