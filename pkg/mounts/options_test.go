package mounts

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		in      string
		flags   uintptr
		data    string
		wantErr string
	}{
		{in: ""},
		{in: "defaults"},
		{in: "ro,noatime,nodev,nosuid,noexec", flags: unix.MS_RDONLY | unix.MS_NOATIME | unix.MS_NODEV | unix.MS_NOSUID | unix.MS_NOEXEC},
		{in: "ro,rw", flags: 0},
		{in: "noatime,relatime", flags: unix.MS_RELATIME},
		{in: "relatime,strictatime,sync,dirsync,lazytime", flags: unix.MS_STRICTATIME | unix.MS_SYNCHRONOUS | unix.MS_DIRSYNC | unix.MS_LAZYTIME},
		{in: "errors=remount-ro,noatime,data=ordered", flags: unix.MS_NOATIME, data: "errors=remount-ro,data=ordered"},
		{in: "defaults,nofail,x-systemd.device-timeout=5,_netdev,comment=x,auto", flags: 0},
		{in: `context="system_u:object_r:tmp_t:s0,c1",size=10m`, data: `context="system_u:object_r:tmp_t:s0,c1",size=10m`},
		{in: " noatime , size=1m ", flags: unix.MS_NOATIME, data: "size=1m"},
		{in: "noauto", wantErr: "remove the entry"},
		{in: "user", wantErr: "no user mounts"},
		{in: "bind", wantErr: "bind mounts"},
		{in: "ro,,noatime", wantErr: "empty option"},
	}
	for _, tt := range tests {
		got, err := ParseOptions(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseOptions(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.Flags != tt.flags || got.Data != tt.data {
			t.Errorf("ParseOptions(%q) = %#x %q, %v; want %#x %q", tt.in, got.Flags, got.Data, err, tt.flags, tt.data)
		}
	}
	o, _ := ParseOptions("lowerdir=/a:/b,upperdir=/u,index")
	if v, ok := o.DataValue("upperdir"); !ok || v != "/u" || !o.HasData("index") || !o.HasData("lowerdir") || o.HasData("workdir") {
		t.Errorf("DataValue/HasData on %q", o.Data)
	}
}

func TestEntryCheck(t *testing.T) {
	tests := []struct {
		name    string
		e       Entry
		wantErr string
	}{
		{"label auto", Entry{Source: "LABEL=photon-data", Target: "/var/lib/photon"}, ""},
		{"uuid xfs", Entry{Source: "UUID=0b9b5b3c-7c55-4d0f-9a8e-1f2e3d4c5b6a", Target: "/data", Type: "xfs"}, ""},
		{"path mkfs", Entry{Source: "/dev/vdb", Target: "/data", MkfsIfEmpty: "ext4"}, ""},
		{"9p", Entry{Source: "share", Target: "/mnt/share", Type: "9p"}, ""},
		{"tmpfs", Entry{Target: "/scratch", Type: "tmpfs", Options: "size=64m"}, ""},
		{"overlay", Entry{Target: "/o", Type: "overlay", Options: "lowerdir=/a,upperdir=/u,workdir=/w"}, ""},
		{"relative target", Entry{Source: "LABEL=x", Target: "data"}, "not a clean absolute path"},
		{"unclean target", Entry{Source: "LABEL=x", Target: "/a/../b"}, "not a clean absolute path"},
		{"unknown type", Entry{Source: "LABEL=x", Target: "/d", Type: "ntfs"}, `type: "ntfs" is not one of auto, ext2`},
		{"bad source", Entry{Source: "photon-data", Target: "/d"}, `source: "photon-data" is not a device`},
		{"bad tag", Entry{Source: "a tag", Target: "/d", Type: "virtiofs"}, "not a virtiofs mount tag"},
		{"overlay without lowerdir", Entry{Target: "/o", Type: "overlay"}, "lowerdir"},
		{"bad option", Entry{Source: "LABEL=x", Target: "/d", Options: "noauto"}, "remove the entry"},
		{"mkfs tmpfs", Entry{Target: "/d", Type: "tmpfs", MkfsIfEmpty: "ext4"}, "needs a filesystem on a disk"},
		{"mkfs contradiction", Entry{Source: "LABEL=x", Target: "/d", Type: "xfs", MkfsIfEmpty: "ext4"}, "contradicts type xfs"},
		{"mkfs unknown", Entry{Source: "LABEL=x", Target: "/d", MkfsIfEmpty: "zfs"}, `mkfs_if_empty: "zfs" is not one of`},
		{"mkfs long label", Entry{Source: "LABEL=seventeen-chars-x", Target: "/d", MkfsIfEmpty: "ext4"}, "longer than ext4's 16 bytes"},
		{"mkfs fat label", Entry{Source: "LABEL=lower", Target: "/d", MkfsIfEmpty: "vfat"}, "a FAT label is upper-case"},
		{"mkfs fat uuid", Entry{Source: "UUID=0b9b5b3c-7c55-4d0f-9a8e-1f2e3d4c5b6a", Target: "/d", MkfsIfEmpty: "vfat"}, "XXXX-XXXX"},
		{"mkfs bad uuid", Entry{Source: "UUID=1234", Target: "/d", MkfsIfEmpty: "ext4"}, "is not of the form"},
		{"negative timeout", Entry{Source: "LABEL=x", Target: "/d", Timeout: -time.Second}, "negative"},
	}
	for _, tt := range tests {
		err := tt.e.Check()
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: Check() = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}
