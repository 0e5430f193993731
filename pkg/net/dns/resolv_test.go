package dns

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestSetRendersInRankOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "photon", "resolv.conf")
	r := New(path)
	if err := r.Write(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name, source string
		rank         int
		cfg          Config
		want         []string // lines after the comments
	}{
		{name: "lease", source: "dhcp eth0", rank: 10, cfg: Config{Nameservers: addrs("10.0.2.3"), Search: []string{"example.test."}},
			want: []string{"nameserver 10.0.2.3", "search example.test"}},
		{name: "static first", source: "init.yaml", rank: 0, cfg: Config{Nameservers: addrs("1.1.1.1", "10.0.2.3"), Options: []string{"edns0"}},
			want: []string{"nameserver 1.1.1.1", "nameserver 10.0.2.3", "search example.test", "options edns0"}},
		{name: "second lease by name", source: "dhcp eth1", rank: 10, cfg: Config{Nameservers: addrs("fd00::53"), Search: []string{"b.test", "example.test"}},
			want: []string{"nameserver 1.1.1.1", "nameserver 10.0.2.3", "nameserver fd00::53", "search example.test b.test", "options edns0"}},
		{name: "lease gone", source: "dhcp eth0", rank: 10, cfg: Config{},
			want: []string{"nameserver 1.1.1.1", "nameserver 10.0.2.3", "nameserver fd00::53", "search b.test example.test", "options edns0"}},
	}
	for _, st := range steps {
		_, changed := r.Current()
		if err := r.Set(st.source, st.rank, st.cfg); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		select {
		case <-changed:
		default:
			t.Errorf("%s: change channel not closed", st.name)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if !strings.HasPrefix(l, "#") {
				got = append(got, l)
			}
		}
		if strings.Join(got, "\n") != strings.Join(st.want, "\n") {
			t.Errorf("%s: file =\n%s\nwant lines\n%s", st.name, data, strings.Join(st.want, "\n"))
		}
		cur, _ := r.Current()
		if string(cur) != string(data) {
			t.Errorf("%s: Current differs from the file", st.name)
		}
	}
	// No change: no notification.
	_, changed := r.Current()
	if err := r.Set("dhcp eth1", 10, Config{Nameservers: addrs("fd00::53"), Search: []string{"b.test", "example.test"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
		t.Error("change channel closed without a change")
	default:
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestFollowRewritesInPlace(t *testing.T) {
	dir := t.TempDir()
	r := New(filepath.Join(dir, "resolv.conf"))
	copyPath := filepath.Join(dir, "container-resolv.conf")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Follow(ctx, copyPath, func(err error) { t.Error(err) }) }()
	waitFor := func(want string) uint64 {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			data, _ := os.ReadFile(copyPath)
			if strings.Contains(string(data), want) {
				fi, _ := os.Stat(copyPath)
				return fi.Sys().(*syscall.Stat_t).Ino
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("copy never contained %q", want)
		return 0
	}
	ino1 := waitFor("Written by photon-init")
	if err := r.Set("x", 0, Config{Nameservers: addrs("192.0.2.53")}); err != nil {
		t.Fatal(err)
	}
	ino2 := waitFor("nameserver 192.0.2.53")
	if ino1 != ino2 {
		t.Errorf("the copy was replaced (inode %d → %d); a bind mount would not see it", ino1, ino2)
	}
	cancel()
	<-done
}

func TestLinkEtc(t *testing.T) {
	const target = "/run/photon/resolv.conf"
	tests := []struct {
		name         string
		setup        func(path string)
		wantReplaced bool
	}{
		{name: "missing", setup: func(string) {}, wantReplaced: true},
		{name: "empty file", setup: func(p string) { os.WriteFile(p, nil, 0o644) }, wantReplaced: true},
		{name: "foreign symlink", setup: func(p string) { os.Symlink("../run/systemd/resolve/stub-resolv.conf", p) }, wantReplaced: true},
		{name: "already ours", setup: func(p string) { os.Symlink(target, p) }, wantReplaced: true},
		{name: "user file", setup: func(p string) { os.WriteFile(p, []byte("nameserver 9.9.9.9\n"), 0o644) }, wantReplaced: false},
		{name: "directory", setup: func(p string) { os.Mkdir(p, 0o755) }, wantReplaced: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "resolv.conf")
			tt.setup(p)
			replaced, err := LinkEtc(p, target)
			if err != nil {
				t.Fatal(err)
			}
			if replaced != tt.wantReplaced {
				t.Fatalf("replaced = %v, want %v", replaced, tt.wantReplaced)
			}
			dest, _ := os.Readlink(p)
			if tt.wantReplaced && dest != target {
				t.Errorf("link points to %q", dest)
			}
			if !tt.wantReplaced && dest != "" {
				t.Errorf("user's file replaced by a link to %q", dest)
			}
			entries, _ := os.ReadDir(filepath.Dir(p))
			if len(entries) != 1 {
				t.Errorf("left over: %v", entries)
			}
		})
	}
}
