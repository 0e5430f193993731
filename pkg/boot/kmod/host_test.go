package kmod

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// hostModules returns the host's Debian 6.1 module directory, skipping the
// test when there is none.
func hostModules(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob("/lib/modules/6.1.0-*-amd64")
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, AliasFile)); err == nil {
			return d
		}
	}
	t.Skip("no /lib/modules/6.1.0-*-amd64 with modules.alias on this host")
	return ""
}

func TestHostIndex(t *testing.T) {
	ix, err := Open(hostModules(t))
	if err != nil {
		t.Fatal(err)
	}
	contains := func(t *testing.T, mods []*Module, want ...string) {
		t.Helper()
		got := names(mods)
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("closure %q lacks %s", got, w)
			}
		}
	}
	mods, err := ix.Resolve("virtio_net")
	if err != nil {
		t.Fatal(err)
	}
	contains(t, mods, "failover", "net_failover", "virtio_net", "virtio", "virtio_ring")
	got := names(mods)
	if i := slices.Index(got, "net_failover"); i < 0 || i > slices.Index(got, "virtio_net") || slices.Index(got, "failover") > i {
		t.Errorf("virtio_net order %q: want failover, net_failover, virtio_net in that order", got)
	}

	mods, err = ix.Resolve("ext4")
	if err != nil {
		t.Fatal(err)
	}
	contains(t, mods, "crc32c_generic", "crc16", "mbcache", "jbd2", "ext4")
	if got := names(mods); slices.Index(got, "crc32c_generic") > slices.Index(got, "ext4") {
		t.Errorf("ext4 order %q: crc32c_generic must come first", got)
	}

	mods, err = ix.Resolve("nft_masq", "nft_chain_nat", "bridge", "9p", "9pnet_virtio", "virtiofs", "fs-overlay", "virtio:d00000001v00001AF4")
	if err != nil {
		t.Fatal(err)
	}
	contains(t, mods, "libcrc32c", "crc32c_generic", "nfnetlink", "nf_tables", "nf_conntrack", "nf_nat", "nft_masq",
		"llc", "stp", "bridge", "9pnet", "9p", "fuse", "virtiofs", "overlay", "virtio_net")

	if _, err := ix.Resolve("no_such_module_anywhere"); err == nil {
		t.Error("unknown module: want an error")
	}
	// A built-in module of the Debian kernel resolves to nothing to load.
	if mods, err := ix.Resolve("unix"); err != nil || len(mods) != 0 {
		t.Errorf("Resolve(unix) = %q, %v; want builtin", names(mods), err)
	}
}

func TestHostAliasTableAgreesWithBruteForce(t *testing.T) {
	ix, err := Open(hostModules(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range hostModaliases(t) {
		q = normalizeAlias(q)
		if got, want := ix.aliases.match(q), bruteMatch(ix.aliases, q); !slices.Equal(got, want) {
			t.Errorf("match(%q) = %q, brute force %q", q, got, want)
		}
	}
}

// hostModaliases returns this machine's modaliases plus typical VM ones.
func hostModaliases(t testing.TB) []string {
	out := []string{
		"virtio:d00000001v00001AF4", "virtio:d00000002v00001AF4", "virtio:d00000004v00001AF4", "virtio:d00000009v00001AF4",
		"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00",
		"acpi:LNXPWRBN:", "acpi:PNP0303:", "acpi:LNRO0005:", "platform:serial8250", "platform:i8042",
		"input:b0019v0000p0001e0000-e0,1,k74,ramlsfw", "input:b0011v0001p0001eAB41-e0,1,4,11,14,k71,72,73,74,ramlsfw",
		"serio:ty01pr00id00ex00", "of:NvirtioT(null)Cvirtio,mmio",
	}
	seen := map[string]bool{}
	_ = walkModaliases("/sys/devices", func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	})
	return out
}

// BenchmarkMatchAliasHost matches a VM's and this host's modaliases against
// the host's full modules.alias (26,000 patterns on Debian 6.1).
func BenchmarkMatchAliasHost(b *testing.B) {
	ix, err := Open(hostModules(b))
	if err != nil {
		b.Fatal(err)
	}
	queries := hostModaliases(b)
	b.ReportMetric(float64(len(queries)), "modaliases/op")
	b.ResetTimer()
	for b.Loop() {
		for _, q := range queries {
			ix.MatchAlias(q)
		}
	}
}

// BenchmarkMatchAliasBruteForce is the per-pattern baseline that bucketing
// avoids.
func BenchmarkMatchAliasBruteForce(b *testing.B) {
	ix, err := Open(hostModules(b))
	if err != nil {
		b.Fatal(err)
	}
	queries := hostModaliases(b)
	b.ResetTimer()
	for b.Loop() {
		for _, q := range queries {
			bruteMatch(ix.aliases, normalizeAlias(q))
		}
	}
}

// BenchmarkColdplugHostTrimmed runs a whole Coldplug (walk of this host's
// /sys/devices, matching, and loading with a fake kernel) against the index
// trimmed to the initramfs's default module set.
func BenchmarkColdplugHostTrimmed(b *testing.B) {
	dir := hostModules(b)
	ix, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat("/sys/devices"); err != nil {
		b.Skip("no /sys/devices")
	}
	closure, _ := ix.Resolve(strings.Fields("virtio_pci virtio_mmio virtio_net virtio_blk virtio_rng virtio_console virtio_scsi ext4 xfs vfat btrfs overlay veth bridge nf_tables nft_chain_nat nft_masq nft_nat nft_ct 9p 9pnet_virtio virtiofs evdev button af_packet")...)
	sub := ix.Subset(names(closure))
	b.ReportMetric(float64(len(sub.aliases.list)), "aliases")
	b.ResetTimer()
	for b.Loop() {
		l := &Loader{Index: sub, Kernel: nopKernel{}, ProcModules: "/nonexistent"}
		if _, err := l.Coldplug(context.Background(), "/sys"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkColdplugHostFull is BenchmarkColdplugHostTrimmed with the full
// host index.
func BenchmarkColdplugHostFull(b *testing.B) {
	ix, err := Open(hostModules(b))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat("/sys/devices"); err != nil {
		b.Skip("no /sys/devices")
	}
	for b.Loop() {
		l := &Loader{Index: ix, Kernel: nopKernel{}, ProcModules: "/nonexistent"}
		if _, err := l.Coldplug(context.Background(), "/sys"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenHost measures parsing the host's full index.
func BenchmarkOpenHost(b *testing.B) {
	dir := hostModules(b)
	for b.Loop() {
		if _, err := Open(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// nopKernel accepts every module without loading it.
type nopKernel struct{}

func (nopKernel) FinitModule(*os.File, string) error { return nil }
func (nopKernel) InitModule([]byte, string) error    { return nil }

// BenchmarkWalkHostSysfs measures one pass of the sysfs walk alone.
func BenchmarkWalkHostSysfs(b *testing.B) {
	if _, err := os.Stat("/sys/devices"); err != nil {
		b.Skip("no /sys/devices")
	}
	n := 0
	for b.Loop() {
		n = 0
		if err := walkModaliases("/sys/devices", func(string) { n++ }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "modaliases")
}
