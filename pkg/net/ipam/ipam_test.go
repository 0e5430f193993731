package ipam

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func mustOpen(t *testing.T, dir, subnet string) *Pool {
	t.Helper()
	p, err := Open(dir, "photon0", netip.MustParsePrefix(subnet))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func get(t *testing.T, p *Pool, name string) string {
	t.Helper()
	a, err := p.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}

func TestStickyAddresses(t *testing.T) {
	dir := t.TempDir()
	p := mustOpen(t, dir, "10.88.0.0/16")
	if p.Gateway().String() != "10.88.0.1" {
		t.Errorf("gateway %s", p.Gateway())
	}
	steps := []struct{ op, name, want string }{
		{"get", "db", "10.88.0.2"},
		{"get", "web", "10.88.0.3"},
		{"get", "db", "10.88.0.2"}, // same name, same address
		{"release", "db", ""},
		{"get", "cache", "10.88.0.4"}, // not the address just released
		{"get", "db", "10.88.0.5"},
	}
	for _, s := range steps {
		switch s.op {
		case "get":
			if got := get(t, p, s.name); got != s.want {
				t.Errorf("get %s = %s, want %s", s.name, got, s.want)
			}
		case "release":
			if err := p.Release(s.name); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Another pool on the same directory (photon-init restarted) sees the
	// same addresses.
	q := mustOpen(t, dir, "10.88.0.0/16")
	if got := get(t, q, "web"); got != "10.88.0.3" {
		t.Errorf("after reopening, web = %s", got)
	}
	if a, ok, err := q.Lookup("db"); err != nil || !ok || a.String() != "10.88.0.5" {
		t.Errorf("lookup db = %v %v %v", a, ok, err)
	}
	if _, ok, _ := q.Lookup("nobody"); ok {
		t.Error("lookup of an unknown name found an address")
	}
	if err := q.Release("nobody"); err != nil {
		t.Errorf("release of an unknown name: %v", err)
	}
	// No temporary file left behind.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "photon0.json" && e.Name() != ".photon0.lock" {
			t.Errorf("stray file %s", e.Name())
		}
	}
}

func TestWrapAndExhaustion(t *testing.T) {
	p := mustOpen(t, t.TempDir(), "192.168.7.0/29") // .2 to .6 usable
	var got []string
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		got = append(got, get(t, p, n))
	}
	if got[0] != "192.168.7.2" || got[4] != "192.168.7.6" {
		t.Errorf("addresses %v", got)
	}
	if _, err := p.Get("f"); !errors.Is(err, ErrExhausted) {
		t.Errorf("seventh address: %v, want ErrExhausted", err)
	}
	p.Release("b")
	if got := get(t, p, "f"); got != "192.168.7.3" {
		t.Errorf("after wrapping: %s, want the released .3", got)
	}
}

func TestSubnetChangeAndCorruptFile(t *testing.T) {
	dir := t.TempDir()
	p := mustOpen(t, dir, "10.88.0.0/16")
	get(t, p, "a")
	get(t, p, "b")
	// The configuration moved the bridge to another subnet: start afresh.
	q := mustOpen(t, dir, "172.20.0.0/24")
	if got := get(t, q, "b"); got != "172.20.0.2" {
		t.Errorf("b in the new subnet: %s", got)
	}
	// A broken file is set aside, not fatal.
	if err := os.WriteFile(filepath.Join(dir, "photon0.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := get(t, q, "c"); got != "172.20.0.2" {
		t.Errorf("after a corrupt file: %s", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "photon0.json.corrupt")); err != nil {
		t.Errorf("corrupt file not kept: %v", err)
	}
}

func TestConcurrentGets(t *testing.T) {
	dir := t.TempDir()
	p := mustOpen(t, dir, "10.88.0.0/24")
	q := mustOpen(t, dir, "10.88.0.0/24") // two pools: the file lock serialises them
	var wg sync.WaitGroup
	addrs := make([]netip.Addr, 40)
	for i := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pool := p
			if i%2 == 1 {
				pool = q
			}
			a, err := pool.Get(string(rune('a'+i%26)) + string(rune('a'+i/26)))
			if err != nil {
				t.Error(err)
			}
			addrs[i] = a
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Errorf("address %s handed out twice", a)
		}
		seen[a] = true
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tt := range []struct{ network, subnet string }{
		{"photon0", "10.0.0.0/31"},
		{"photon0", "fd00::/64"},
		{"../x", "10.0.0.0/24"},
		{"", "10.0.0.0/24"},
	} {
		if _, err := Open(t.TempDir(), tt.network, netip.MustParsePrefix(tt.subnet)); err == nil {
			t.Errorf("Open(%q, %s) accepted", tt.network, tt.subnet)
		}
	}
}
