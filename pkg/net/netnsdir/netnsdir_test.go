package netnsdir

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestCreateRemove(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNS|unix.CLONE_NEWNET) {
		return
	}
	nstest.Private(t)
	d, err := Open(filepath.Join(t.TempDir(), "netns"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Unmount(); err != nil {
			t.Error(err)
		}
	})
	// Opening again is harmless.
	if _, err := Open(d.path); err != nil {
		t.Fatal(err)
	}
	p, err := d.Create("web")
	if err != nil {
		t.Fatal(err)
	}
	if inode(t, p) == inode(t, "/proc/self/ns/net") || inode(t, p) == inode(t, "/proc/thread-self/ns/net") {
		t.Fatal("the new namespace is the test's own")
	}
	// It is a fresh namespace: only lo, down.
	h, err := netns.GetFromPath(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	links, err := nh.LinkList()
	nh.Close()
	if err != nil || len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Errorf("links in the new namespace: %v %v", links, err)
	}
	// The directory is a shared mount point.
	infos, _ := mountinfo.GetMounts(mountinfo.SingleEntryFilter(d.path))
	if len(infos) != 1 || !slices.ContainsFunc([]string{infos[0].Optional}, func(s string) bool { return len(s) > 7 && s[:7] == "shared:" }) {
		t.Errorf("netns dir mount: %+v", infos)
	}
	// Create over a stale file replaces it.
	old := inode(t, p)
	if _, err := d.Create("web"); err != nil {
		t.Fatal(err)
	}
	if inode(t, p) == old {
		t.Error("Create over an existing file kept the old namespace")
	}
	if _, err := d.Create("db"); err != nil {
		t.Fatal(err)
	}
	names, err := d.List()
	if err != nil || !slices.Equal(names, []string{"db", "web"}) {
		t.Errorf("List = %v %v", names, err)
	}
	for _, n := range []string{"web", "db", "db"} {
		if err := d.Remove(n); err != nil {
			t.Errorf("Remove %s: %v", n, err)
		}
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("file left: %v", err)
	}
	if m, _ := mountinfo.Mounted(p); m {
		t.Error("still mounted")
	}
	for _, bad := range []string{"", "..", "a/b"} {
		if _, err := d.Create(bad); err == nil {
			t.Errorf("Create(%q) accepted", bad)
		}
	}
}
