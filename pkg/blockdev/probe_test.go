package blockdev

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/photon-init/photon-init/pkg/blockdev/blockdevtest"
)

// blkid returns util-linux's view of an image (TYPE, LABEL, UUID, ...).
func blkid(t *testing.T, img string) map[string]string {
	t.Helper()
	out, err := exec.Command(blockdevtest.Need(t, "blkid"), "-p", "-o", "export", img).Output()
	kv := map[string]string{}
	if err != nil {
		return kv // exit 2: nothing found
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

const (
	uuidA = "0b9b5b3c-7c55-4d0f-9a8e-1f2e3d4c5b6a"
	uuidB = "5f4d3c2b-1a09-4877-8665-544332211000"
)

func TestProbe(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name string
		size int64
		mkfs []string // tool, args...; the image path is appended
		want Filesystem
	}{
		{"ext4", 64 * mib, []string{"mkfs.ext4", "-q", "-F", "-L", "photon-data", "-U", uuidA}, Filesystem{"ext4", "photon-data", uuidA}},
		{"ext3", 64 * mib, []string{"mkfs.ext3", "-q", "-F", "-L", "old-data", "-U", uuidB}, Filesystem{"ext3", "old-data", uuidB}},
		{"ext2", 16 * mib, []string{"mkfs.ext2", "-q", "-F", "-U", uuidA}, Filesystem{"ext2", "", uuidA}},
		{"ext4 full label", 64 * mib, []string{"mkfs.ext4", "-q", "-F", "-L", "sixteen-chars-lb", "-U", uuidB}, Filesystem{"ext4", "sixteen-chars-lb", uuidB}},
		{"xfs", 320 * mib, []string{"mkfs.xfs", "-q", "-f", "-L", "xfsdata", "-m", "uuid=" + uuidA}, Filesystem{"xfs", "xfsdata", uuidA}},
		{"btrfs", 128 * mib, []string{"mkfs.btrfs", "-q", "-f", "-L", "butter", "-U", uuidB}, Filesystem{"btrfs", "butter", uuidB}},
		{"swap", 16 * mib, []string{"mkswap", "-L", "swappy", "-U", uuidA}, Filesystem{"swap", "swappy", uuidA}},
		{"vfat fat16", 64 * mib, []string{"mkfs.vfat", "-F", "16", "-n", "PHOTON", "-i", "1234ABCD"}, Filesystem{"vfat", "PHOTON", "1234-ABCD"}},
		{"vfat fat32", 64 * mib, []string{"mkfs.vfat", "-F", "32", "-s", "1", "-n", "EFI", "-i", "0badcafe"}, Filesystem{"vfat", "EFI", "0BAD-CAFE"}},
		{"vfat fat12 no label", 4 * mib, []string{"mkfs.vfat", "-F", "12", "-i", "00c0ffee"}, Filesystem{"vfat", "", "00C0-FFEE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := blockdevtest.Image(t, tt.size)
			blockdevtest.Run(t, tt.mkfs[0], append(tt.mkfs[1:], img)...)
			got, err := ProbeFile(img)
			if err != nil {
				t.Fatalf("ProbeFile: %v", err)
			}
			if got != tt.want {
				t.Errorf("ProbeFile = %+v, want %+v", got, tt.want)
			}
			// libblkid agrees.
			b := blkid(t, img)
			if b["TYPE"] != got.Type || b["LABEL"] != got.Label || !strings.EqualFold(b["UUID"], got.UUID) {
				t.Errorf("blkid says TYPE=%s LABEL=%s UUID=%s; Probe %+v", b["TYPE"], b["LABEL"], b["UUID"], got)
			}
		})
	}
}

func TestProbeNothing(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty file", nil},
		{"zeros", make([]byte, 1<<20)},
		{"short", []byte("XFSB")},
		{"garbage", bytes.Repeat([]byte("photon-init "), 100000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "img")
			if err := os.WriteFile(p, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if fs, err := ProbeFile(p); !errors.Is(err, ErrNoSignature) {
				t.Errorf("ProbeFile = %+v, %v; want ErrNoSignature", fs, err)
			}
		})
	}
	if _, err := ProbeFile(filepath.Join(t.TempDir(), "missing")); err == nil || errors.Is(err, ErrNoSignature) {
		t.Errorf("missing file: %v, want an open error", err)
	}
}

func TestBlank(t *testing.T) {
	const size = 8 << 20
	tests := []struct {
		name  string
		write map[int64][]byte // offset → bytes
		want  bool
	}{
		{"zeros", nil, true},
		{"byte at start", map[int64][]byte{4096: {1}}, false},
		{"byte at end", map[int64][]byte{size - 1: {1}}, false},
		{"byte in the middle", map[int64][]byte{size / 2: {1}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := blockdevtest.Image(t, size)
			f, err := os.OpenFile(img, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			for off, b := range tt.write {
				if _, err := f.WriteAt(b, off); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()
			if got, err := Blank(img); err != nil || got != tt.want {
				t.Errorf("Blank = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	img := blockdevtest.Image(t, 64<<20)
	blockdevtest.Run(t, "mkfs.ext4", "-q", "-F", img)
	if got, err := Blank(img); err != nil || got {
		t.Errorf("Blank(ext4) = %v, %v; want false", got, err)
	}
}

func TestReadPartitions(t *testing.T) {
	const diskGUID = "c0ffee00-1111-4222-8333-444455556666"
	tests := []struct {
		name   string
		script string // sfdisk input
		want   Table
	}{
		{
			name: "gpt",
			script: "label: gpt\nlabel-id: " + diskGUID + "\n" +
				"start=2048, size=8192, name=\"photon-data\", uuid=" + uuidA + "\n" +
				"start=10240, size=8192, uuid=" + uuidB + "\n",
			want: Table{Kind: "gpt", ID: diskGUID, Partitions: []Partition{
				{Number: 1, UUID: uuidA, Name: "photon-data", Start: 2048 * 512, Size: 8192 * 512},
				{Number: 2, UUID: uuidB, Start: 10240 * 512, Size: 8192 * 512},
			}},
		},
		{
			name: "dos with logical partitions",
			script: "label: dos\nlabel-id: 0x1234abcd\n" +
				"start=2048, size=8192, type=83\n" +
				"start=10240, size=40960, type=5\n" +
				"start=12288, size=4096, type=83\n" +
				"start=18432, size=4096, type=82\n",
			want: Table{Kind: "dos", ID: "1234abcd", Partitions: []Partition{
				{Number: 1, UUID: "1234abcd-01", Start: 2048 * 512, Size: 8192 * 512},
				{Number: 2, UUID: "1234abcd-02", Start: 10240 * 512, Size: 40960 * 512},
				{Number: 5, UUID: "1234abcd-05", Start: 12288 * 512, Size: 4096 * 512},
				{Number: 6, UUID: "1234abcd-06", Start: 18432 * 512, Size: 4096 * 512},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := blockdevtest.Image(t, 32<<20)
			cmd := exec.Command(blockdevtest.Need(t, "sfdisk"), "--no-reread", "--no-tell-kernel", "-q", img)
			cmd.Stdin = strings.NewReader(tt.script)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sfdisk: %v\n%s", err, out)
			}
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ReadPartitions(f, 0)
			if err != nil || got == nil {
				t.Fatalf("ReadPartitions = %v, %v", got, err)
			}
			if got.Kind != tt.want.Kind || got.ID != tt.want.ID || len(got.Partitions) != len(tt.want.Partitions) {
				t.Fatalf("table %s %s with %d partitions, want %s %s with %d", got.Kind, got.ID, len(got.Partitions), tt.want.Kind, tt.want.ID, len(tt.want.Partitions))
			}
			for i, w := range tt.want.Partitions {
				g := got.Partitions[i]
				g.Type = "" // checked by sfdisk's own choice, not here
				if g != w {
					t.Errorf("partition %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		for _, mk := range [][]string{nil, {"mkfs.vfat", "-F", "16"}, {"mkfs.ext4", "-q", "-F"}} {
			img := blockdevtest.Image(t, 32<<20)
			if mk != nil {
				blockdevtest.Run(t, mk[0], append(mk[1:], img)...)
			}
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			tbl, err := ReadPartitions(f, 0)
			f.Close()
			if tbl != nil || err != nil {
				t.Errorf("%v: ReadPartitions = %+v, %v; want no table", mk, tbl, err)
			}
		}
	})
	t.Run("corrupt gpt", func(t *testing.T) {
		img := blockdevtest.Image(t, 32<<20)
		cmd := exec.Command(blockdevtest.Need(t, "sfdisk"), "--no-reread", "--no-tell-kernel", "-q", img)
		cmd.Stdin = strings.NewReader("label: gpt\nstart=2048, size=8192\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sfdisk: %v\n%s", err, out)
		}
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte{0xff}, 512+60); err != nil { // inside the disk GUID
			t.Fatal(err)
		}
		if _, err := ReadPartitions(f, 0); err == nil || !strings.Contains(err.Error(), "checksum") {
			t.Errorf("ReadPartitions of a corrupt header: %v, want a checksum error", err)
		}
	})
}

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    Spec
		wantErr string
	}{
		{in: "LABEL=photon-data", want: Spec{"LABEL", "photon-data"}},
		{in: `LABEL="my data"`, want: Spec{"LABEL", "my data"}},
		{in: "uuid=" + uuidA, want: Spec{"UUID", uuidA}},
		{in: "PARTUUID=1234abcd-01", want: Spec{"PARTUUID", "1234abcd-01"}},
		{in: "PARTLABEL=root", want: Spec{"PARTLABEL", "root"}},
		{in: "/dev/vdb", want: Spec{"", "/dev/vdb"}},
		{in: "/dev/../vdb", wantErr: "not clean"},
		{in: "LABEL=", wantErr: "empty LABEL"},
		{in: "ID=x", wantErr: "unknown key ID="},
		{in: "vdb", wantErr: "is not a device"},
	}
	for _, tt := range tests {
		got, err := ParseSpec(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseSpec(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}
