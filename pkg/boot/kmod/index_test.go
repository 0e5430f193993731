package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const fixture = "testdata/index"

func openFixture(t testing.TB) *Index {
	t.Helper()
	ix, err := Open(fixture)
	if err != nil {
		t.Fatalf("Open(%s): %v", fixture, err)
	}
	return ix
}

func names(mods []*Module) []string {
	out := make([]string, len(mods))
	for i, m := range mods {
		out[i] = m.Name
	}
	return out
}

func TestResolve(t *testing.T) {
	ix := openFixture(t)
	virtioNet := []string{"virtio_ring", "virtio", "failover", "net_failover", "virtio_net"}
	tests := []struct {
		name    string
		req     []string
		want    []string
		unknown []string // names that must be reported unknown
	}{
		{"hard deps first, last listed first", []string{"virtio_net"}, virtioNet, nil},
		{"dash and underscore equivalent", []string{"virtio-rng"}, []string{"virtio_ring", "virtio", "virtio_rng"}, nil},
		{"alias", []string{"fs-overlay"}, []string{"overlay"}, nil},
		{"alias normalised", []string{"fs_overlay"}, []string{"overlay"}, nil},
		{"modalias glob", []string{"virtio:d00000001v00001AF4"}, virtioNet, nil},
		{"pci modalias", []string{"pci:v00001AF4d00001041sv00001AF4sd00001041bc02sc00i00"},
			[]string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci"}, nil},
		{"softdep through alias, all matches, deps' softdeps", []string{"ext4"},
			[]string{"crc32c_intel", "crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"}, nil},
		{"softdep of a dependency through alias, builtin softdep skipped", []string{"xfs"},
			[]string{"crc32c_intel", "crc32c_generic", "libcrc32c", "xfs"}, nil},
		{"shared deps once", []string{"virtio_net", "virtio_blk", "virtio-net"},
			append(slices.Clone(virtioNet), "virtio_blk"), nil},
		{"builtin name", []string{"af_packet"}, nil, nil},
		{"builtin name with dash", []string{"sha256-generic"}, nil, nil},
		{"builtin alias", []string{"net-pf-17"}, nil, nil},
		{"builtin from modinfo only", []string{"fat"}, nil, nil},
		{"softdep cycle", []string{"cycle_a"}, []string{"cycle_b", "cycle_a"}, nil},
		{"softdep cycle other way", []string{"cycle_b"}, []string{"cycle_a", "cycle_b"}, nil},
		{"hard dep cycle", []string{"hard_a"}, []string{"hard_b", "hard_a"}, nil},
		{"post softdep after, unknown softdep ignored", []string{"with_post"}, []string{"with_post", "post_target"}, nil},
		{"dependency without its own line", []string{"orphan_user"}, []string{"no_line", "orphan_user"}, nil},
		{"bracket alias", []string{"usb:v152Dp0567d0116dc00dsc00dp00ic08isc06ip50in00"}, []string{"usb_storage"}, nil},
		{"bracket alias out of range", []string{"usb:v152Dp0567d0118dc00dsc00dp00ic08isc06ip50in00"}, nil,
			[]string{"usb:v152Dp0567d0118dc00dsc00dp00ic08isc06ip50in00"}},
		{"unknown", []string{"no_such_module"}, nil, []string{"no_such_module"}},
		{"unknown does not stop the others", []string{"nope", "overlay", "nada"}, []string{"overlay"}, []string{"nope", "nada"}},
		{"alias of a module missing from modules.dep", []string{"alias-of-missing"}, nil, []string{"alias-of-missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mods, err := ix.Resolve(tt.req...)
			if got := names(mods); !slices.Equal(got, tt.want) {
				t.Errorf("Resolve(%q) = %q, want %q", tt.req, got, tt.want)
			}
			if len(tt.unknown) == 0 {
				if err != nil {
					t.Errorf("Resolve(%q) error: %v", tt.req, err)
				}
				return
			}
			if !errors.Is(err, ErrUnknownModule) {
				t.Fatalf("Resolve(%q) error = %v, want ErrUnknownModule", tt.req, err)
			}
			for _, u := range tt.unknown {
				if !strings.Contains(err.Error(), `"`+u+`"`) {
					t.Errorf("error %q does not name %q", err, u)
				}
			}
			var ue *UnknownModuleError
			if !errors.As(err, &ue) || ue.Dir != fixture {
				t.Errorf("error %v: want an *UnknownModuleError naming %s", err, fixture)
			}
		})
	}
}

func TestOpenParses(t *testing.T) {
	ix := openFixture(t)
	m, ok := ix.Module("virtio-rng")
	if !ok || m.Name != "virtio_rng" || m.Path != "kernel/drivers/char/hw_random/virtio-rng.ko" {
		t.Fatalf("Module(virtio-rng) = %+v, %v", m, ok)
	}
	if !slices.Equal(m.Deps, []string{"virtio", "virtio_ring"}) {
		t.Errorf("virtio_rng deps = %q", m.Deps)
	}
	if sd := ix.SoftDeps("cifs"); sd == nil || len(sd.Pre)+len(sd.Post) != 0 {
		t.Errorf("softdep without pre:/post: should add nothing, got %+v", sd)
	}
	if sd := ix.SoftDeps("with-post"); sd == nil || !slices.Equal(sd.Pre, []string{"missing-thing"}) || !slices.Equal(sd.Post, []string{"post-target"}) {
		t.Errorf("SoftDeps(with_post) = %+v", sd)
	}
	for _, b := range []string{"af_packet", "af-packet", "sha256_generic", "fat"} {
		if !ix.IsBuiltin(b) {
			t.Errorf("IsBuiltin(%s) = false", b)
		}
	}
	if ix.IsBuiltin("ext4") {
		t.Error("IsBuiltin(ext4) = true")
	}
	if got := len(ix.Modules()); got != 34 {
		t.Errorf("len(Modules()) = %d, want 34 (33 lines + one dependency without a line)", got)
	}
}

func TestOpenOptionalFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), DepFile) {
		t.Fatalf("Open without modules.dep: err = %v, want one naming %s", err, DepFile)
	}
	if err := os.WriteFile(filepath.Join(dir, DepFile), []byte("kernel/a.ko: kernel/b.ko.xz\nkernel/b.ko.xz:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ix, err := Open(dir)
	if err != nil {
		t.Fatalf("Open with only modules.dep: %v", err)
	}
	mods, err := ix.Resolve("a")
	if err != nil || !slices.Equal(names(mods), []string{"b", "a"}) {
		t.Errorf("Resolve(a) = %q, %v", names(mods), err)
	}
	if err := os.WriteFile(filepath.Join(dir, AliasFile), []byte("alias broken\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), AliasFile) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("Open with a bad alias line: err = %v, want file and line", err)
	}
}

func TestSubsetEncodeRoundTrip(t *testing.T) {
	ix := openFixture(t)
	closure, err := ix.Resolve("virtio_net", "ext4", "evdev")
	if err != nil {
		t.Fatal(err)
	}
	sub := ix.Subset(names(closure))
	dir := t.TempDir()
	for _, f := range []string{DepFile, AliasFile, SoftdepFile} {
		data, err := sub.Encode(f)
		if err != nil {
			t.Fatalf("Encode(%s): %v", f, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sub.Encode(BuiltinFile); err == nil {
		t.Error("Encode(modules.builtin) should fail")
	}
	back, err := Open(dir)
	if err != nil {
		t.Fatalf("Open(trimmed): %v", err)
	}
	again, err := back.Resolve("virtio_net", "ext4", "evdev")
	if err != nil || !slices.Equal(names(again), names(closure)) {
		t.Errorf("trimmed index resolves to %q (%v), want %q", names(again), err, names(closure))
	}
	if len(back.Modules()) != len(closure) {
		t.Errorf("trimmed index has %d modules, want %d", len(back.Modules()), len(closure))
	}
	alias, _ := os.ReadFile(filepath.Join(dir, AliasFile))
	for _, want := range []string{
		"alias virtio:d00000001v* virtio_net\n",
		"alias input:b*v*p*e*-e*k*r*a*m*l*s*f*w* evdev\n", // raw pattern kept, not normalised
		"alias cpu:type:x86,ven*fam*mod*:feature:*0094* crc32c_intel\n",
		"alias crc32c crc32c_generic\n",
	} {
		if !strings.Contains(string(alias), want) {
			t.Errorf("trimmed modules.alias lacks %q:\n%s", want, alias)
		}
	}
	for _, bad := range []string{"virtio_pci", "button", "overlay", "usb_storage"} {
		if strings.Contains(string(alias), " "+bad+"\n") {
			t.Errorf("trimmed modules.alias has a line of %s:\n%s", bad, alias)
		}
	}
	soft, _ := os.ReadFile(filepath.Join(dir, SoftdepFile))
	if !strings.Contains(string(soft), "softdep ext4 pre: crypto-crc32c\n") || strings.Contains(string(soft), "xfs") || strings.Contains(string(soft), "cycle") {
		t.Errorf("trimmed modules.softdep:\n%s", soft)
	}
	dep, _ := os.ReadFile(filepath.Join(dir, DepFile))
	if !strings.Contains(string(dep), "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n") {
		t.Errorf("trimmed modules.dep:\n%s", dep)
	}
	// Subset adds hard dependencies that were not named.
	if got := names(ix.Subset([]string{"virtio_net"}).Modules()); len(got) != 5 {
		t.Errorf("Subset(virtio_net) = %q, want it with its 4 hard deps", got)
	}
}
