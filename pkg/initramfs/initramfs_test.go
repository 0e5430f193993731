package initramfs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
)

const testVersion = "6.1.0-99-test"

// writeModulesDir writes a small /lib/modules/VERSION tree whose module
// files hold their own path.
func writeModulesDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lib", "modules", testVersion)
	dep := `kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/input/evdev.ko:
kernel/drivers/acpi/button.ko:
kernel/fs/overlayfs/overlay.ko.xz:
kernel/sound/unrelated.ko:
kernel/drivers/gpu/big.ko: kernel/sound/unrelated.ko
`
	files := map[string]string{
		"modules.dep": dep,
		"modules.alias": `# Aliases extracted from modules themselves.
alias virtio:d00000001v* virtio_net
alias fs-ext4 ext4
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
alias input:b*v*p*e*-e*k*r*a*m*l*s*f*w* evdev
alias acpi*:LNXPWRBN:* button
alias fs-overlay overlay
alias pci:v00001234d* big
alias snd-unrelated unrelated
`,
		"modules.softdep": `# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep big pre: snd-unrelated
`,
		"modules.builtin":         "kernel/net/packet/af_packet.ko\nkernel/fs/fat/fat.ko\n",
		"modules.builtin.modinfo": "af_packet.alias=net-pf-17\x00",
	}
	for _, line := range strings.Split(strings.TrimSpace(dep), "\n") {
		rel, _, _ := strings.Cut(line, ":")
		files[rel] = "module " + rel
	}
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeTree creates files under a new temp dir: a path ending in "/" is a
// directory, "->target" a symlink, anything else a file's content. Modes
// are given separately. When possible everything is chowned to 1234:1234,
// so tests see ownership that is not 0:0.
func writeTree(t *testing.T, files map[string]string, modes map[string]fs.FileMode) string {
	t.Helper()
	root := t.TempDir()
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, rel := range keys {
		content := files[rel]
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(rel, "/"):
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(content, "->"):
			if err := os.Symlink(content[2:], p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for rel, m := range modes {
		if err := os.Chmod(filepath.Join(root, rel), m); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil {
				os.Lchown(p, 1234, 1234)
			}
			return nil
		})
		// Chown clears setuid/setgid: set the modes again.
		for rel, m := range modes {
			if err := os.Chmod(filepath.Join(root, rel), m); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

// entry is one archive member as read back.
type entry struct {
	name     string
	mode     cpio.FileMode
	uid, gid int
	data     string
	link     string
	mtime    int64
}

// readArchive reads a newc archive with github.com/cavaliergopher/cpio, an
// implementation independent of ours.
func readArchive(t *testing.T, data []byte) []entry {
	t.Helper()
	r := cpio.NewReader(bytes.NewReader(data))
	var out []entry
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		body, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read %s: %v", h.Name, err)
		}
		out = append(out, entry{name: h.Name, mode: h.Mode, uid: h.Uid, gid: h.Guid, data: string(body), link: h.Linkname, mtime: h.ModTime.Unix()})
	}
	return out
}

func find(entries []entry, name string) (entry, bool) {
	for _, e := range entries {
		if e.name == name {
			return e, true
		}
	}
	return entry{}, false
}

// rawHeaders parses the 13 header fields of every entry itself, for the
// fields the reader above does not expose (rdevmajor, rdevminor).
func rawHeaders(t *testing.T, data []byte) map[string][13]uint64 {
	t.Helper()
	out := map[string][13]uint64{}
	off := 0
	for off+110 <= len(data) {
		if string(data[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d", off)
		}
		var f [13]uint64
		for i := range f {
			v, err := strconv.ParseUint(string(data[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("header field %d at %d: %v", i, off, err)
			}
			f[i] = v
		}
		namesize := int(f[11])
		name := string(data[off+110 : off+110+namesize-1])
		off += (110 + namesize + 3) &^ 3
		off += (int(f[6]) + 3) &^ 3
		if name == "TRAILER!!!" {
			if off != len(data) {
				t.Errorf("%d bytes after the trailer", len(data)-off)
			}
			return out
		}
		out[name] = f
	}
	t.Fatal("no trailer")
	return nil
}

func assemble(t *testing.T, opts Options) (*Builder, *Report) {
	t.Helper()
	b, rep, err := Assemble(context.Background(), opts)
	if err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	return b, rep
}

func writeArchive(t *testing.T, b *Builder, c Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	st, err := b.Write(context.Background(), &buf, c)
	if err != nil {
		t.Fatalf("Write(%s): %v", c, err)
	}
	if st.Bytes != int64(buf.Len()) {
		t.Errorf("WriteStats.Bytes = %d, wrote %d", st.Bytes, buf.Len())
	}
	return buf.Bytes()
}

func fullOptions(t *testing.T) Options {
	t.Helper()
	initBin := writeTree(t, map[string]string{"photon-init": "#!fake init binary"}, nil)
	overlay1 := writeTree(t, map[string]string{
		"etc/motd":                 "one",
		"etc/photon/init.yaml":     "hostname: one\n",
		"etc/conf/inner":           "replaced by a file in overlay2",
		"usr/bin/tool":             "tool",
		"usr/bin/setuid-tool":      "suid",
		"bin/sh":                   "->/usr/bin/tool",
		"var/lib/photon/empty/":    "",
		"etc/photon/containers/a/": "",
	}, map[string]fs.FileMode{
		"usr/bin/tool":        0o755,
		"usr/bin/setuid-tool": fs.ModeSetuid | 0o755,
		"etc/photon":          0o750,
		"var/lib/photon":      0o700,
	})
	overlay2 := writeTree(t, map[string]string{
		"etc/motd":      "two",
		"etc/conf":      "now a file",
		"etc/localtime": "->../usr/share/zoneinfo/UTC",
	}, nil)
	return Options{
		Init:             filepath.Join(initBin, "photon-init"),
		ModulesDir:       writeModulesDir(t),
		Modules:          []string{"virtio_net,fs-ext4", "evdev", " button "},
		NoDefaultModules: true,
		Overlays:         []string{overlay1, overlay2},
	}
}

func TestAssembleReadBack(t *testing.T) {
	opts := fullOptions(t)
	b, rep := assemble(t, opts)
	data := writeArchive(t, b, None)
	entries := readArchive(t, data)

	seen := map[string]bool{}
	for i, e := range entries {
		if e.uid != 0 || e.gid != 0 {
			t.Errorf("%s owned by %d:%d, want 0:0", e.name, e.uid, e.gid)
		}
		if e.mtime != 0 {
			t.Errorf("%s mtime %d, want 0", e.name, e.mtime)
		}
		if strings.HasPrefix(e.name, "/") {
			t.Errorf("%s: absolute name", e.name)
		}
		if dir := path.Dir(e.name); dir != "." && !seen[dir] {
			t.Errorf("%s comes before its directory %s", e.name, dir)
		}
		if i > 0 && entries[i-1].name >= e.name {
			t.Errorf("%s after %s: not sorted", e.name, entries[i-1].name)
		}
		seen[e.name] = true
	}

	mode := func(name string) cpio.FileMode {
		e, ok := find(entries, name)
		if !ok {
			t.Errorf("archive lacks %s", name)
		}
		return e.mode
	}
	for name, want := range map[string]cpio.FileMode{
		"dev":                  cpio.TypeDir | 0o755,
		"proc":                 cpio.TypeDir | 0o555,
		"sys":                  cpio.TypeDir | 0o555,
		"run":                  cpio.TypeDir | 0o755,
		"tmp":                  cpio.TypeDir | cpio.ModeSticky | 0o777,
		"root":                 cpio.TypeDir | 0o700,
		"etc":                  cpio.TypeDir | 0o755,
		"var":                  cpio.TypeDir | 0o755,
		"dev/console":          cpio.TypeChar | 0o600,
		"init":                 cpio.TypeReg | 0o755,
		"usr/bin/tool":         cpio.TypeReg | 0o755,
		"usr/bin/setuid-tool":  cpio.TypeReg | cpio.ModeSetuid | 0o755,
		"etc/photon":           cpio.TypeDir | 0o750,
		"var/lib/photon":       cpio.TypeDir | 0o700,
		"var/lib/photon/empty": cpio.TypeDir | 0o755,
		"bin/sh":               cpio.TypeSymlink | 0o777,
		"etc/conf":             cpio.TypeReg | 0o644,
		"lib/modules":          cpio.TypeDir | 0o755,
		"lib/modules/" + testVersion + "/kernel/fs/overlayfs/overlay.ko.xz": 0, // not requested
	} {
		if want == 0 {
			if _, ok := find(entries, name); ok {
				t.Errorf("archive has %s", name)
			}
			continue
		}
		if got := mode(name); got != want {
			t.Errorf("%s mode %o, want %o", name, got, want)
		}
	}

	content := func(name string) string {
		e, _ := find(entries, name)
		return e.data
	}
	if got := content("init"); got != "#!fake init binary" {
		t.Errorf("/init = %q", got)
	}
	if got := content("etc/motd"); got != "two" {
		t.Errorf("etc/motd = %q: the later overlay must win", got)
	}
	if got := content("etc/conf"); got != "now a file" {
		t.Errorf("etc/conf = %q", got)
	}
	if _, ok := find(entries, "etc/conf/inner"); ok {
		t.Error("etc/conf/inner survived etc/conf becoming a file")
	}
	if e, _ := find(entries, "bin/sh"); e.link != "/usr/bin/tool" {
		t.Errorf("bin/sh -> %q", e.link)
	}
	if e, _ := find(entries, "etc/localtime"); e.link != "../usr/share/zoneinfo/UTC" {
		t.Errorf("etc/localtime -> %q", e.link)
	}

	// Modules: the closure, at the same relative paths.
	wantMods := []string{"virtio_ring", "virtio", "failover", "net_failover", "virtio_net", "crc32c_generic", "jbd2", "mbcache", "crc16", "ext4", "evdev", "button"}
	if !slices.Equal(rep.Modules, wantMods) {
		t.Errorf("Report.Modules = %q, want %q", rep.Modules, wantMods)
	}
	if rep.KernelVersion != testVersion || len(rep.Warnings) != 0 {
		t.Errorf("Report = %+v", rep)
	}
	mdir := "lib/modules/" + testVersion + "/"
	for _, p := range []string{"kernel/drivers/net/virtio_net.ko", "kernel/crypto/crc32c_generic.ko", "kernel/drivers/acpi/button.ko"} {
		if got := content(mdir + p); got != "module "+p {
			t.Errorf("%s = %q", mdir+p, got)
		}
	}
	if _, ok := find(entries, mdir+"kernel/drivers/gpu/big.ko"); ok {
		t.Error("unrequested module big.ko included")
	}

	// The trimmed index.
	alias := content(mdir + "modules.alias")
	for _, want := range []string{"alias virtio:d00000001v* virtio_net\n", "alias input:b*v*p*e*-e*k*r*a*m*l*s*f*w* evdev\n", "alias crc32c crc32c_generic\n", "alias fs-ext4 ext4\n"} {
		if !strings.Contains(alias, want) {
			t.Errorf("modules.alias lacks %q:\n%s", want, alias)
		}
	}
	for _, bad := range []string{"big", "unrelated", "overlay"} {
		if strings.Contains(alias, " "+bad+"\n") {
			t.Errorf("modules.alias keeps lines of %s:\n%s", bad, alias)
		}
	}
	if got := content(mdir + "modules.softdep"); got != "# Soft dependencies extracted from modules themselves.\nsoftdep ext4 pre: crypto-crc32c\n" {
		t.Errorf("modules.softdep = %q", got)
	}
	dep := content(mdir + "modules.dep")
	if strings.Count(dep, "\n") != len(wantMods) || !strings.Contains(dep, "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n") {
		t.Errorf("modules.dep =\n%s", dep)
	}
	if got := content(mdir + "modules.builtin"); got != "kernel/net/packet/af_packet.ko\nkernel/fs/fat/fat.ko\n" {
		t.Errorf("modules.builtin = %q, want the original", got)
	}
	if got := content(mdir + "modules.builtin.modinfo"); got != "af_packet.alias=net-pf-17\x00" {
		t.Errorf("modules.builtin.modinfo = %q", got)
	}

	// /dev/console's device number, from our own header parse.
	raw := rawHeaders(t, data)
	if f := raw["dev/console"]; f[9] != 5 || f[10] != 1 {
		t.Errorf("dev/console rdev = %d,%d, want 5,1", f[9], f[10])
	}
	if len(raw) != len(entries) {
		t.Errorf("raw parse found %d entries, reader %d", len(raw), len(entries))
	}
	inodes := map[uint64]string{}
	for name, f := range raw {
		if other, dup := inodes[f[0]]; dup {
			t.Errorf("%s and %s share inode %d", name, other, f[0])
		}
		inodes[f[0]] = name
	}
}

func TestArchiveWithGNUCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("no cpio command")
	}
	b, _ := assemble(t, fullOptions(t))
	data := writeArchive(t, b, None)

	cmd := exec.Command("cpio", "-tvn", "--quiet")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -tvn: %v\n%s", err, out)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("odd cpio -tv line %q", l)
		}
		if f[2] != "0" || f[3] != "0" {
			t.Errorf("cpio -tvn: %q not owned by 0 0", l)
		}
		name := f[len(f)-1]
		if strings.HasPrefix(f[0], "l") {
			name = f[len(f)-3]
		}
		lines[name] = l
	}
	if l := lines["dev/console"]; !strings.HasPrefix(l, "crw------- ") || !strings.Contains(l, " 5,   1 ") {
		t.Errorf("dev/console: %q", l)
	}
	if l := lines["bin/sh"]; !strings.HasPrefix(l, "lrwxrwxrwx ") || !strings.HasSuffix(l, "bin/sh -> /usr/bin/tool") {
		t.Errorf("bin/sh: %q", l)
	}
	if l := lines["usr/bin/setuid-tool"]; !strings.HasPrefix(l, "-rwsr-xr-x ") {
		t.Errorf("setuid-tool: %q", l)
	}
	if l := lines["tmp"]; !strings.HasPrefix(l, "drwxrwxrwt ") {
		t.Errorf("tmp: %q", l)
	}
	if len(lines) != len(readArchive(t, data)) {
		t.Errorf("cpio -t lists %d entries, the Go reader %d", len(lines), len(readArchive(t, data)))
	}

	// Unpack it, as the kernel would, and compare a file.
	dir := t.TempDir()
	cmd = exec.Command("cpio", "-id", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "etc/photon/init.yaml")); string(got) != "hostname: one\n" {
		t.Errorf("unpacked init.yaml = %q", got)
	}
}

func TestDeterministic(t *testing.T) {
	opts := fullOptions(t)
	for _, c := range Compressions() {
		b1, _ := assemble(t, opts)
		b2, _ := assemble(t, opts)
		a, b := writeArchive(t, b1, c), writeArchive(t, b2, c)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two builds differ", c)
		}
	}
	// Touching and re-owning inputs changes nothing.
	b1, _ := assemble(t, opts)
	before := writeArchive(t, b1, None)
	for _, d := range opts.Overlays {
		filepath.WalkDir(d, func(p string, _ fs.DirEntry, _ error) error {
			os.Lchown(p, 4321, 4321)
			return nil
		})
	}
	// chown cleared the setuid bit; the mode is not what this is about.
	if err := os.Chmod(filepath.Join(opts.Overlays[0], "usr/bin/setuid-tool"), fs.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	b2, _ := assemble(t, opts)
	if !bytes.Equal(before, writeArchive(t, b2, None)) {
		t.Error("archive depends on the inputs' ownership")
	}
}

func TestCompressionRoundTrip(t *testing.T) {
	b, _ := assemble(t, fullOptions(t))
	plain := writeArchive(t, b, None)
	tools := map[Compression][]string{
		Gzip: {"gzip", "-dc"},
		LZ4:  {"lz4", "-dc"},
		Zstd: {"zstd", "-dc"},
	}
	for c, argv := range tools {
		t.Run(string(c), func(t *testing.T) {
			if _, err := exec.LookPath(argv[0]); err != nil {
				t.Skipf("no %s command", argv[0])
			}
			packed := writeArchive(t, b, c)
			if bytes.Equal(packed, plain) || len(packed) >= len(plain) {
				t.Errorf("%s output is %d bytes for %d of input", c, len(packed), len(plain))
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Stdin = bytes.NewReader(packed)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
			}
			if !bytes.Equal(out, plain) {
				t.Errorf("%s output differs from the uncompressed archive", strings.Join(argv, " "))
			}
		})
	}
	// The kernel reads only lz4's legacy frames (magic 0x184C2102).
	if lz := writeArchive(t, b, LZ4); !bytes.HasPrefix(lz, []byte{0x02, 0x21, 0x4c, 0x18}) {
		t.Errorf("lz4 output starts % x, want the legacy magic", lz[:4])
	}
}

func TestParseCompression(t *testing.T) {
	for in, want := range map[string]Compression{"": None, "none": None, "gzip": Gzip, "LZ4": LZ4, "zstd": Zstd} {
		if got, err := ParseCompression(in); err != nil || got != want {
			t.Errorf("ParseCompression(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseCompression("xz"); err == nil {
		t.Error("ParseCompression(xz): want an error")
	}
}

func TestDefaultModulesAndWarnings(t *testing.T) {
	opts := fullOptions(t)
	opts.NoDefaultModules = false
	opts.Modules = []string{"no_such_thing", "net-pf-17"}
	_, rep := assemble(t, opts)
	warned := strings.Join(rep.Warnings, "\n")
	for _, w := range []string{`"no_such_thing"`, `"virtio_pci"`, `"nf_tables"`, opts.ModulesDir} {
		if !strings.Contains(warned, w) {
			t.Errorf("warnings lack %s:\n%s", w, warned)
		}
	}
	for _, w := range []string{"virtio_scsi", "btrfs", "af_packet", "net-pf-17", `"virtio_net"`} {
		if strings.Contains(warned, w) {
			t.Errorf("warnings mention %s:\n%s", w, warned)
		}
	}
	for _, m := range []string{"virtio_net", "ext4", "crc32c_generic", "overlay", "evdev", "button"} {
		if !slices.Contains(rep.Modules, m) {
			t.Errorf("default build lacks %s: %q", m, rep.Modules)
		}
	}
}

func TestNoModulesDir(t *testing.T) {
	opts := fullOptions(t)
	opts.ModulesDir = ""
	b, rep := assemble(t, opts)
	if len(rep.Modules) != 0 {
		t.Errorf("modules without a modules dir: %q", rep.Modules)
	}
	for _, p := range b.Paths() {
		if strings.HasPrefix(p, "lib/") {
			t.Errorf("entry %s without a modules dir", p)
		}
	}
}

func TestAssembleErrors(t *testing.T) {
	opts := fullOptions(t)
	opts.Init = filepath.Join(t.TempDir(), "missing-init")
	if _, _, err := Assemble(context.Background(), opts); err == nil || !strings.Contains(err.Error(), opts.Init) {
		t.Errorf("missing init: err = %v, want it named", err)
	}
	opts = fullOptions(t)
	opts.ModulesDir = t.TempDir()
	if _, _, err := Assemble(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("modules dir without modules.dep: err = %v", err)
	}
	opts = fullOptions(t)
	opts.Overlays = append(opts.Overlays, filepath.Join(t.TempDir(), "nope"))
	if _, _, err := Assemble(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing overlay: err = %v", err)
	}
	opts = fullOptions(t)
	if err := os.Remove(filepath.Join(opts.ModulesDir, "kernel/drivers/input/evdev.ko")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Assemble(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "evdev.ko") {
		t.Errorf("missing module file: err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Assemble(ctx, fullOptions(t)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}

func TestBuilder(t *testing.T) {
	b := NewBuilder()
	for _, bad := range []string{"", "/", "../x", "a/../../b", "a/.."} {
		if err := b.AddFile(bad, 0o644, nil); err == nil {
			t.Errorf("AddFile(%q): want an error", bad)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.AddFile("/a/b/c", 0o600, []byte("x")))
	must(b.AddFile("a/b/d", 0o600, []byte("y")))
	must(b.AddSymlink("usr/bin/photonctl", "../../init"))
	must(b.Add(Entry{Path: "run/fifo", Mode: fs.ModeNamedPipe | 0o600}))
	if err := b.AddSymlink("l", ""); err == nil {
		t.Error("symlink without target: want an error")
	}
	if err := b.Add(Entry{Path: "s", Mode: fs.ModeSocket}); err == nil {
		t.Error("socket: want an error")
	}
	if got := b.Paths(); !slices.Equal(got, []string{"a/b/c", "a/b/d", "run/fifo", "usr/bin/photonctl"}) {
		t.Errorf("Paths() = %q", got)
	}
	data := writeArchive(t, b, None)
	var names []string
	for _, e := range readArchive(t, data) {
		names = append(names, e.name)
	}
	want := []string{"a", "a/b", "a/b/c", "a/b/d", "run", "run/fifo", "usr", "usr/bin", "usr/bin/photonctl"}
	if !slices.Equal(names, want) {
		t.Errorf("entries %q, want %q", names, want)
	}
	// A file replacing a directory drops its contents; a file below a
	// file turns the latter into a directory.
	must(b.AddFile("a/b", 0o644, []byte("file now")))
	must(b.AddFile("usr/bin/photonctl/x", 0o644, nil))
	if got := b.Paths(); !slices.Equal(got, []string{"a/b", "run/fifo", "usr/bin/photonctl/x"}) {
		t.Errorf("Paths() = %q", got)
	}
	// A source file that changes size between Add and Write is an error.
	src := filepath.Join(t.TempDir(), "grows")
	must(os.WriteFile(src, []byte("12"), 0o644))
	must(b.AddFileFrom("grows", 0o644, src))
	must(os.WriteFile(src, []byte("1234"), 0o644))
	if _, err := b.Write(context.Background(), io.Discard, None); err == nil || !strings.Contains(err.Error(), src) {
		t.Errorf("grown source: err = %v", err)
	}
	must(os.WriteFile(src, []byte("1"), 0o644))
	if _, err := b.Write(context.Background(), io.Discard, None); err == nil || !strings.Contains(err.Error(), "shrank") {
		t.Errorf("shrunk source: err = %v", err)
	}
}

// hostModules returns the host's Debian 6.1 modules directory or skips.
func hostModules(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/lib/modules/6.1.0-*-amd64")
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "modules.alias")); err == nil {
			return d
		}
	}
	t.Skip("no /lib/modules/6.1.0-*-amd64 on this host")
	return ""
}

func TestHostModulesDefaults(t *testing.T) {
	dir := hostModules(t)
	initBin := writeTree(t, map[string]string{"init": "init"}, nil)
	b, rep := assemble(t, Options{Init: filepath.Join(initBin, "init"), ModulesDir: dir})
	if len(rep.Warnings) != 0 {
		t.Errorf("warnings with the host's modules: %q", rep.Warnings)
	}
	data := writeArchive(t, b, None)
	var virtioNet, crc32c bool
	var alias string
	version := filepath.Base(dir)
	for _, e := range readArchive(t, data) {
		switch {
		case strings.HasSuffix(e.name, "/virtio_net.ko"):
			virtioNet = true
		case strings.HasSuffix(e.name, "/crc32c_generic.ko"):
			crc32c = true
		case e.name == "lib/modules/"+version+"/modules.alias":
			alias = e.data
		}
	}
	if !virtioNet || !crc32c {
		t.Errorf("archive: virtio_net.ko %v, crc32c_generic.ko %v; want both", virtioNet, crc32c)
	}
	orig, err := os.ReadFile(filepath.Join(dir, "modules.alias"))
	if err != nil {
		t.Fatal(err)
	}
	n, on := strings.Count(alias, "\n"), strings.Count(string(orig), "\n")
	if n == 0 || n*20 > on {
		t.Errorf("trimmed modules.alias has %d lines of %d: want far fewer", n, on)
	}
	t.Logf("%d modules, %d entries, %.1f MiB; modules.alias %d of %d lines", len(rep.Modules), len(readArchive(t, data)), float64(len(data))/(1<<20), n, on)
}

// TestOwnerTimeAndHardlinks checks per-entry ownership and mtime, and that
// hard links share one inode with the data written once (and unpack as
// links with GNU cpio, which follows the kernel's rules for newc).
func TestOwnerTimeAndHardlinks(t *testing.T) {
	b := NewBuilder()
	mt := time.Unix(1700000000, 0)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Add(Entry{Path: "srv/a", Mode: 0o640, Data: []byte("shared\n"), UID: 1000, GID: 2000, ModTime: mt}))
	must(b.Add(Entry{Path: "srv/b", Mode: 0o640, Hardlink: "/srv/a", UID: 1000, GID: 2000}))
	must(b.Add(Entry{Path: "aaa/c", Mode: 0o640, Hardlink: "srv/a"}))
	must(b.Add(Entry{Path: "srv/d", Mode: 0o644, Data: []byte("alone\n")}))
	data := writeArchive(t, b, None)
	h := rawHeaders(t, data)
	// fields: 0 ino, 1 mode, 2 uid, 3 gid, 4 nlink, 5 mtime, 6 size
	a, bb, c, d := h["srv/a"], h["srv/b"], h["aaa/c"], h["srv/d"]
	if a[2] != 1000 || a[3] != 2000 || a[5] != uint64(mt.Unix()) {
		t.Errorf("srv/a owner %d:%d mtime %d", a[2], a[3], a[5])
	}
	if a[0] != bb[0] || a[0] != c[0] || a[0] == d[0] {
		t.Errorf("inodes a=%d b=%d c=%d d=%d: links must share one, others not", a[0], bb[0], c[0], d[0])
	}
	if a[4] != 3 || bb[4] != 3 || c[4] != 3 || d[4] != 1 {
		t.Errorf("nlink a=%d b=%d c=%d d=%d", a[4], bb[4], c[4], d[4])
	}
	if c[6] != 7 || a[6] != 0 || bb[6] != 0 {
		t.Errorf("sizes: aaa/c (first written) %d, srv/a %d, srv/b %d: data must be written once", c[6], a[6], bb[6])
	}
	if err := b.Add(Entry{Path: "x", Mode: fs.ModeSymlink, Hardlink: "srv/a"}); err == nil {
		t.Error("hard link of a symlink accepted")
	}
	bad := NewBuilder()
	must(bad.Add(Entry{Path: "l", Mode: 0o644, Hardlink: "missing"}))
	if _, err := bad.WriteCPIO(context.Background(), io.Discard); err == nil {
		t.Error("hard link to a missing entry written")
	}

	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("no cpio command")
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-id", "--quiet", "--no-preserve-owner")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v\n%s", err, out)
	}
	fa, _ := os.Stat(filepath.Join(dir, "srv/a"))
	fb, _ := os.Stat(filepath.Join(dir, "srv/b"))
	fc, _ := os.Stat(filepath.Join(dir, "aaa/c"))
	if fa == nil || fb == nil || fc == nil || !os.SameFile(fa, fb) || !os.SameFile(fa, fc) {
		t.Fatalf("unpacked links are not one file: %v %v %v", fa, fb, fc)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "srv/b")); string(got) != "shared\n" {
		t.Errorf("srv/b = %q", got)
	}
}
