package preload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/photon-init/photon-init/internal/nstest"
	"github.com/photon-init/photon-init/internal/testimage"
	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/initramfs"
	"golang.org/x/sys/unix"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		arg, name, ref, wantErr string
	}{
		{arg: "oci:/x:1", name: "oci:/x:1", ref: "oci:/x:1"},
		{arg: "app:1.0=oci:/out/app:1.0", name: "app:1.0", ref: "oci:/out/app:1.0"},
		{arg: "app:1.0=", wantErr: "empty"},
		{arg: "Bad Name=oci:/x", wantErr: "invalid reference"},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			s, err := ParseSpec(tt.arg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || s.Name != tt.name || s.Ref != tt.ref {
				t.Fatalf("%+v %v", s, err)
			}
		})
	}
}

// fileInfo is what is compared between two unpacked layer trees.
type fileInfo struct {
	mode, uid, gid uint32
	rdev           uint64
	mtime          int64
	link, sum      string
	hardlinks      string // paths sharing the inode, for nlink > 1
	opaque         bool
}

// describe lists a layer tree's files with their metadata.
func describe(t *testing.T, root string) map[string]fileInfo {
	t.Helper()
	out := map[string]fileInfo{}
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fi := fileInfo{mode: st.Mode, uid: st.Uid, gid: st.Gid, rdev: st.Rdev}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			fi.sum = hex.EncodeToString(sum[:])
			fi.mtime = st.Mtim.Sec
			if st.Nlink > 1 {
				inodes[st.Ino] = append(inodes[st.Ino], rel)
			}
		case unix.S_IFLNK:
			fi.link, _ = os.Readlink(p)
		case unix.S_IFDIR:
			v := make([]byte, 2)
			n, err := unix.Lgetxattr(p, "trusted.overlay.opaque", v)
			fi.opaque = err == nil && string(v[:n]) == "y"
		}
		out[rel] = fi
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, paths := range inodes {
		slices.Sort(paths)
		for _, p := range paths {
			fi := out[p]
			fi.hardlinks = strings.Join(paths, ",")
			out[p] = fi
		}
	}
	return out
}

// TestPreloadMatchesStore writes the test images into an initramfs, unpacks
// it with GNU cpio as the kernel would, and checks that the store there
// serves them without unpacking (by the names given, which no source could
// resolve), with every layer identical to what the store itself unpacks.
func TestPreloadMatchesStore(t *testing.T) {
	if !nstest.Run(t, syscall.CLONE_NEWNS) {
		return
	}
	nstest.Private(t)
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("no cpio command (scripts/deps.sh installs it)")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	im := testimage.Build(t, "")
	ctx := context.Background()

	resolver, err := image.Open(filepath.Join(dir, "scratch"))
	if err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "spool")
	os.Mkdir(spool, 0o700)
	specs := []Spec{
		{Name: "app:1.0", Ref: im.OCIMultiRef()},
		{Name: "example.com/base:1", Ref: im.OCIRef()}, // shares the base layer
		{Name: im.DockerArchiveRef(), Ref: im.DockerArchiveRef()},
	}
	b := initramfs.NewBuilder()
	results, err := Add(ctx, b, resolver, specs, Options{Spool: spool})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 || results[0].Layers != im.MultiLayers || results[1].Entries != 0 {
		t.Errorf("results %+v", results)
	}
	var archive bytes.Buffer
	if _, err := b.WriteCPIO(ctx, &archive); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd")
	os.Mkdir(initrd, 0o755)
	cmd := exec.Command("cpio", "-idm", "--quiet")
	cmd.Dir = initrd
	cmd.Stdin = &archive
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -idm: %v\n%s", err, out)
	}

	pre, err := image.Open(filepath.Join(initrd, DefaultStoreDir))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := image.Open(filepath.Join(dir, "reference"))
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range specs {
		t.Run(spec.Name, func(t *testing.T) {
			got, err := pre.Get(ctx, spec.Name)
			if err != nil {
				t.Fatalf("preloaded store: %v", err)
			}
			want, err := ref.Get(ctx, spec.Ref)
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != want.Digest || len(got.Layers) != len(want.Layers) || fmt.Sprint(got.Config) != fmt.Sprint(want.Config) {
				t.Fatalf("preloaded %+v\nstore     %+v", got, want)
			}
			for i := range got.Layers {
				g, w := describe(t, got.Layers[i]), describe(t, want.Layers[i])
				for p, wi := range w {
					if p == "." {
						continue
					}
					if gi, ok := g[p]; !ok {
						t.Errorf("layer %d: %s missing from the preloaded layer", i, p)
					} else if gi != wi {
						t.Errorf("layer %d: %s\npreloaded %+v\nstore     %+v", i, p, gi, wi)
					}
				}
				for p := range g {
					if _, ok := w[p]; !ok {
						t.Errorf("layer %d: %s only in the preloaded layer", i, p)
					}
				}
			}
		})
	}
	// Nothing was pulled into the preloaded store: no layer beyond those
	// in the archive, no partial directories.
	var extra []string
	filepath.WalkDir(filepath.Join(initrd, DefaultStoreDir, "layers"), func(p string, d fs.DirEntry, err error) error {
		if strings.HasSuffix(p, ".partial") {
			extra = append(extra, p)
		}
		return nil
	})
	if len(extra) > 0 {
		t.Errorf("preloaded store unpacked: %v", extra)
	}
}

// TestPreloadErrors checks that a broken image fails the build with the
// image named.
func TestPreloadErrors(t *testing.T) {
	dir := t.TempDir()
	resolver, err := image.Open(filepath.Join(dir, "scratch"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Add(context.Background(), initramfs.NewBuilder(), resolver,
		[]Spec{{Name: "app", Ref: "oci:" + filepath.Join(dir, "missing")}}, Options{Spool: dir})
	if err == nil || !strings.Contains(err.Error(), "preload app") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("error %v", err)
	}
}
