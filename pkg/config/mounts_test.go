package config

import (
	"strings"
	"testing"
	"time"

	"github.com/photon-init/photon-init/pkg/mounts"
)

func TestParseMounts(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		wantErr []string // substrings, each on its own line of the error; none means success
		check   func(*testing.T, *Config)
	}{
		{
			name: "full",
			text: `mounts:
  - source: LABEL=photon-data
    target: /var/lib/photon
    options: noatime,nodev
    timeout: 30s
    mkfs_if_empty: ext4
  - source: UUID=0b9b5b3c-7c55-4d0f-9a8e-1f2e3d4c5b6a
    target: /var/lib/photon/volumes/db
    type: xfs
  - source: share
    target: /mnt/share
    type: 9p
    options: ro,msize=262144
  - target: /scratch
    type: tmpfs
    options: size=64m,mode=1777
  - target: /srv
    type: overlay
    options: lowerdir=/usr/share/srv,upperdir=/var/lib/photon/srv/upper,workdir=/var/lib/photon/srv/work
root:
  source: LABEL=photon-root
  options: rw,noatime
  timeout: 5s
`,
			check: func(t *testing.T, c *Config) {
				if len(c.Mounts) != 5 || c.Root == nil {
					t.Fatalf("decoded %+v", c)
				}
				want := mounts.Entry{Source: "LABEL=photon-data", Target: "/var/lib/photon", Options: "noatime,nodev", Timeout: 30 * time.Second, MkfsIfEmpty: "ext4"}
				if got := c.Mounts[0].Entry(); got != want {
					t.Errorf("entry 0 = %+v, want %+v", got, want)
				}
				if got := c.Mounts[1].Entry(); got.Timeout != DefaultDeviceTimeout || got.Type != "xfs" {
					t.Errorf("entry 1 = %+v", got)
				}
				if got := c.Root.Entry("/sysroot"); got.Source != "LABEL=photon-root" || got.Target != "/sysroot" || got.Timeout != 5*time.Second || got.Options != "rw,noatime" {
					t.Errorf("root = %+v", got)
				}
			},
		},
		{name: "unknown field", text: "mounts:\n  - source: LABEL=x\n    target: /x\n    fstype: ext4\n", wantErr: []string{"init.yaml:4: field fstype not found in type config.Mount"}},
		{name: "not a list", text: "mounts:\n  source: LABEL=x\n", wantErr: []string{"init.yaml:2: cannot unmarshal !!map into []config.Mount"}},
		{
			name: "bad fields",
			text: `mounts:
  - source: photon-data
    target: data
  - source: LABEL=x
    target: /x
    type: ntfs
  - source: LABEL=x
    target: /y
    options: ro,noauto
    timeout: ten
  - target: /z
  - source: LABEL=seventeen-chars-x
    target: /w
    mkfs_if_empty: ext4
  - source: tag
    target: /t
    type: tmpfs
    timeout: 5s
`,
			wantErr: []string{
				`init.yaml:2: mounts[0].source: "photon-data" is not a device`,
				`init.yaml:3: mounts[0].target: "data" is not a clean absolute path`,
				`init.yaml:6: mounts[1].type: "ntfs" is not one of auto, ext2, ext3, ext4, xfs, vfat, btrfs, 9p, virtiofs, tmpfs, overlay`,
				`init.yaml:9: mounts[2].options: option "noauto": every entry is mounted at boot`,
				`init.yaml:10: mounts[2].timeout: "ten" is not a duration`,
				`init.yaml:11: mounts[3]: source is required`,
				`init.yaml:14: mounts[4].mkfs_if_empty: label "seventeen-chars-x" is longer than ext4's 16 bytes`,
				`init.yaml:18: mounts[5].timeout: a tmpfs mount waits for nothing`,
			},
		},
		{
			name: "order and duplicates",
			text: `mounts:
  - source: LABEL=db
    target: /var/lib/photon/volumes/db
  - source: LABEL=data
    target: /var/lib/photon
  - source: LABEL=other
    target: /var/lib/photon
  - source: LABEL=p
    target: /proc
`,
			wantErr: []string{
				"init.yaml:5: mounts[1].target: /var/lib/photon would hide /var/lib/photon/volumes/db, mounted before it (line 3): list /var/lib/photon first",
				"init.yaml:7: mounts[2].target: /var/lib/photon is mounted already by the entry at line 5",
				"init.yaml:9: mounts[3].target: /proc cannot be mounted here: photon-init mounts it",
			},
		},
		{name: "missing target", text: "mounts:\n  - source: LABEL=x\n", wantErr: []string{"init.yaml:2: mounts[0]: target is required"}},
		{name: "root without source", text: "root:\n  type: ext4\n", wantErr: []string{"init.yaml:2: root: source is required"}},
		{name: "root tmpfs", text: "root:\n  source: LABEL=r\n  type: tmpfs\n", wantErr: []string{`init.yaml:3: root.type: "tmpfs" is not a filesystem on a disk`}},
		{name: "root bad options", text: "root:\n  source: LABEL=r\n  options: bind\n  timeout: -1s\n", wantErr: []string{
			`init.yaml:3: root.options: option "bind": bind mounts are not supported here`,
			`init.yaml:4: root.timeout: "-1s" is negative`,
		}},
		{name: "root mkfs is not a field", text: "root:\n  source: LABEL=r\n  mkfs_if_empty: ext4\n", wantErr: []string{"init.yaml:3: field mkfs_if_empty not found in type config.Root"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("/etc/photon/init.yaml", []byte(tt.text))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.check != nil {
					tt.check(t, cfg)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.wantErr) {
				t.Errorf("%d errors, want %d:\n%v", len(lines), len(tt.wantErr), err)
			}
			for _, w := range tt.wantErr {
				found := false
				for _, l := range lines {
					found = found || strings.Contains(l, w)
				}
				if !found {
					t.Errorf("no error line contains %q:\n%v", w, err)
				}
			}
			if len(cfg.Mounts) != 0 || cfg.Root != nil {
				t.Errorf("a failed parse returned mounts: %+v", cfg)
			}
		})
	}
}

func TestValidRootSpec(t *testing.T) {
	for in, ok := range map[string]bool{"LABEL=root": true, "/dev/vda1": true, "PARTUUID=1234abcd-01": true, "vda": false, "LABEL=": false} {
		if err := ValidRootSpec(in); (err == nil) != ok {
			t.Errorf("ValidRootSpec(%q) = %v", in, err)
		}
	}
}
