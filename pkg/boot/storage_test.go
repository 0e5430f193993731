package boot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
	"github.com/photon-init/photon-init/internal/syncbuf"
	"github.com/photon-init/photon-init/pkg/blockdev/blockdevtest"
	"github.com/photon-init/photon-init/pkg/config"
)

func TestCmdlineRoot(t *testing.T) {
	tests := []struct {
		in, root, warning string
	}{
		{"photon.root=LABEL=photon-root", "LABEL=photon-root", ""},
		{"photon.root=PARTUUID=1234abcd-02 quiet", "PARTUUID=1234abcd-02", ""},
		{"photon.root=/dev/vda", "/dev/vda", ""},
		{"photon.root=vda", "", `photon.root="vda": "vda" is not a device`},
		{"photon.root=LABEL=", "", `photon.root="LABEL=": "LABEL=": empty LABEL`},
	}
	for _, tt := range tests {
		c := ParseCmdline(tt.in)
		warn := strings.Join(c.Warnings, "; ")
		if c.Root != tt.root || !strings.Contains(warn, tt.warning) || (tt.warning == "") != (warn == "") {
			t.Errorf("ParseCmdline(%q): root %q, warnings %q; want %q, %q", tt.in, c.Root, warn, tt.root, tt.warning)
		}
	}
}

func TestRootEntry(t *testing.T) {
	m := newMachine(Options{}, &syncbuf.Buffer{})
	if _, ok := m.rootEntry(); ok {
		t.Error("a root without photon.root= or root:")
	}
	m.config = &config.Config{Root: &config.Root{Source: "LABEL=from-file", Options: "noatime", Timeout: "3s"}}
	if e, ok := m.rootEntry(); !ok || e.Source != "LABEL=from-file" || e.Target != Sysroot || e.Timeout != 3*time.Second {
		t.Errorf("root from the file: %+v", e)
	}
	m.cmdline = ParseCmdline("photon.root=UUID=0b9b5b3c-7c55-4d0f-9a8e-1f2e3d4c5b6a")
	if e, ok := m.rootEntry(); !ok || e.Source != "UUID=0b9b5b3c-7c55-4d0f-9a8e-1f2e3d4c5b6a" || e.Options != "noatime" {
		t.Errorf("photon.root= over the file: %+v", e)
	}
	m.config = nil
	if e, ok := m.rootEntry(); !ok || e.Timeout != config.DefaultDeviceTimeout || e.Type != "" {
		t.Errorf("photon.root= alone: %+v", e)
	}
}

// TestMountStorage runs the storage phase of a sandbox machine in a mount
// namespace: a disk found by label, a tmpfs, a missing disk reported after
// its timeout (the rest mounted all the same), and photon.root= refused in
// sandbox mode; the timeline records both steps.
func TestMountStorage(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNS) {
		return
	}
	nstest.Private(t)
	label := blockdevtest.Unique("boot")
	img := blockdevtest.Image(t, 16<<20)
	blockdevtest.Run(t, "mkfs.ext4", "-q", "-F", "-L", label, img)
	blockdevtest.Loop(t, img)
	dir := t.TempDir()
	t.Cleanup(func() {
		for _, p := range []string{"data", "scratch", "missing"} {
			_ = unix.Unmount(filepath.Join(dir, p), unix.MNT_DETACH)
		}
	})
	cfgPath := filepath.Join(dir, "init.yaml")
	yaml := "mounts:\n" +
		"  - source: LABEL=" + label + "\n    target: " + dir + "/data\n    options: noatime\n    timeout: 5s\n" +
		"  - target: " + dir + "/scratch\n    type: tmpfs\n" +
		"  - source: LABEL=no-such-disk\n    target: " + dir + "/missing\n    timeout: 200ms\n"
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	m := newMachine(Options{Sandbox: true, ConfigPath: cfgPath}, &out)
	m.cmdline = ParseCmdline("photon.root=LABEL=photon-root")
	if err := m.loadConfig(context.Background()); err != nil {
		t.Fatal(err)
	}
	plan := []Phase{{"storage", []Step{{Name: "mounts", Run: (*Machine).mountStorage}}}}
	if err := m.runPlan(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	m.console.Flush(time.Second)
	console := out.String()
	for _, want := range []string{
		"mounts: LABEL=" + label + ": /dev/loop",
		"on " + dir + "/data",
		"mounts: tmpfs on " + dir + "/scratch",
		"ERROR mounts: LABEL=no-such-disk on " + dir + "/missing: LABEL=no-such-disk: no such device after 200ms",
		"ERROR mounts: switch root to LABEL=photon-root: not in sandbox mode",
	} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
	for p, fstype := range map[string]string{"data": "ext4", "scratch": "tmpfs", "missing": "tmpfs"} {
		ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(filepath.Join(dir, p)))
		if err != nil || len(ms) != 1 || ms[0].FSType != fstype {
			t.Errorf("%s: %v, %v; want one %s mount", p, ms, err, fstype)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "missing/x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write below the missing disk's target: %v, want EROFS", err)
	}
	var steps []string
	for _, s := range m.timeline.Steps() {
		steps = append(steps, s.Phase+"/"+s.Name)
	}
	if strings.Join(steps, " ") != "storage/mounts storage/switch-root" {
		t.Errorf("timeline steps %v", steps)
	}
}
