package aci_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/photon-init/photon-init/internal/testimage"
	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/image/aci"
)

// appcArch is the appc arch label of this machine.
func appcArch(t *testing.T) string {
	switch runtime.GOARCH {
	case "amd64":
		return "amd64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i386"
	}
	t.Skipf("no appc arch label for %s in this test", runtime.GOARCH)
	return ""
}

// otherArch is an appc arch label that is not this machine's.
func otherArch() string {
	if runtime.GOARCH == "s390x" {
		return "amd64"
	}
	return "s390x"
}

// fullManifest uses every field the source maps to image.Config.
func fullManifest(t *testing.T) []byte {
	return testimage.ACIManifest(t, "example.com/photon/server", map[string]any{
		"exec":             []string{"/bin/server", "-listen", ":8080"},
		"user":             "1000",
		"group":            "www",
		"workingDirectory": "/srv",
		"environment": []map[string]string{
			{"name": "PATH", "value": "/bin"},
			{"name": "GREETING", "value": "hello world"},
		},
		"ports": []map[string]any{
			{"name": "http", "protocol": "tcp", "port": 8080},
			{"name": "dns", "protocol": "UDP", "port": 53, "count": 2},
		},
		"mountPoints": []map[string]any{
			{"name": "data", "path": "/var/lib/data"},
			{"name": "cache", "path": "/var/cache/", "readOnly": true},
		},
		"isolators": []map[string]any{
			{"name": "resource/memory", "value": map[string]string{"limit": "1G"}},
		},
	}, map[string]any{
		"labels": []map[string]string{
			{"name": "version", "value": "1.0.0"},
			{"name": "os", "value": "linux"},
			{"name": "arch", "value": appcArch(t)},
		},
		"annotations": []map[string]string{
			{"name": "authors", "value": "Photon <photon@example.com>"},
			{"name": "created", "value": "2026-11-24T00:00:00Z"},
		},
	})
}

// writeACI writes entries as an ACI, fails the test on error and returns
// the uncompressed tar.
func writeACI(t *testing.T, file, compression string, entries []testimage.ACIEntry) []byte {
	t.Helper()
	raw, err := testimage.WriteACI(file, compression, entries)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// resolveACI resolves the ACI at file, failing the test on error.
func resolveACI(t *testing.T, file string) *image.Resolved {
	t.Helper()
	src, err := aci.New(file)
	if err != nil {
		t.Fatal(err)
	}
	res, err := src.Resolve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

var rootfs = []testimage.ACIEntry{
	{Name: "bin", Type: tar.TypeDir},
	{Name: "bin/server", Mode: 0o755, Body: []byte("#!/bin/sh\necho hi\n")},
	{Name: "bin/sh", Type: tar.TypeSymlink, Link: "/bin/server"},
	{Name: "bin/hard", Type: tar.TypeLink, Link: "rootfs/bin/server"},
	{Name: "srv", Type: tar.TypeDir},
}

func TestResolveCompressions(t *testing.T) {
	want := image.Config{
		User:         "1000:www",
		Env:          []string{"PATH=/bin", "GREETING=hello world"},
		Entrypoint:   []string{"/bin/server", "-listen", ":8080"},
		WorkingDir:   "/srv",
		ExposedPorts: []string{"8080/tcp", "53/udp", "54/udp"},
		Volumes:      []string{"/var/lib/data", "/var/cache"},
		Labels: map[string]string{
			"authors": "Photon <photon@example.com>",
			"created": "2026-11-24T00:00:00Z",
		},
	}
	dir := t.TempDir()
	for _, c := range testimage.ACICompressions {
		t.Run(c, func(t *testing.T) {
			file := filepath.Join(dir, "server-"+c+".aci")
			raw := writeACI(t, file, c, testimage.ACIEntries(fullManifest(t), rootfs...))
			testimage.ValidateACI(t, file)
			res := resolveACI(t, file)
			sum := sha512.Sum512(raw)
			id := "sha512:" + hex.EncodeToString(sum[:])
			if res.Digest != id {
				t.Errorf("Digest = %s, want the appc image ID %s", res.Digest, id)
			}
			if !reflect.DeepEqual(res.Config, want) {
				t.Errorf("Config =\n%#v\nwant\n%#v", res.Config, want)
			}
			if len(res.Layers) != 1 {
				t.Fatalf("%d layers, want 1", len(res.Layers))
			}
			l := res.Layers[0]
			if l.Digest != id || l.DiffID != "" || l.MediaType != ocispec.MediaTypeImageLayer ||
				l.Size != int64(len(raw)) || l.PathPrefix != "rootfs/" {
				t.Errorf("layer = %+v, want digest %s, tar media type, size %d, prefix rootfs/", l, id, len(raw))
			}
			rc, err := l.Open(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, raw) {
				t.Errorf("Open gave %d bytes differing from the %d-byte uncompressed tar", len(got), len(raw))
			}
		})
	}
}

// TestNoApp: an image without an app section has an empty config.
func TestNoApp(t *testing.T) {
	file := filepath.Join(t.TempDir(), "base.aci")
	writeACI(t, file, testimage.ACIGzip, testimage.ACIEntries(testimage.ACIManifest(t, "base", nil, nil)))
	testimage.ValidateACI(t, file)
	res := resolveACI(t, file)
	if !reflect.DeepEqual(res.Config, image.Config{}) {
		t.Errorf("Config = %+v, want empty", res.Config)
	}
}

func TestBadInput(t *testing.T) {
	app := map[string]any{"exec": []string{"/bin/x"}, "user": "0", "group": "0"}
	manifest := testimage.ACIManifest(t, "bad", app, nil)
	withManifest := func(extra map[string]any) []testimage.ACIEntry {
		return testimage.ACIEntries(testimage.ACIManifest(t, "bad", app, extra))
	}
	withApp := func(key string, v any) []testimage.ACIEntry {
		a := map[string]any{}
		for k, x := range app {
			a[k] = x
		}
		a[key] = v
		return testimage.ACIEntries(testimage.ACIManifest(t, "bad", a, nil))
	}
	plus := func(extra ...testimage.ACIEntry) []testimage.ACIEntry {
		return append(testimage.ACIEntries(manifest), extra...)
	}
	tests := []struct {
		name    string
		raw     []byte // the file, when not built from entries
		entries []testimage.ACIEntry
		comp    string
		want    string
		// appcValid: appc's actool accepts it (photon-init refuses what
		// it cannot run); else actool must refuse it too.
		appcValid bool
	}{
		{name: "empty file", raw: []byte{}, want: "no manifest in the archive"},
		{name: "not a tar", raw: bytes.Repeat([]byte("this is not an ACI\n"), 64), want: "not a tar archive (uncompressed)"},
		{name: "gzip of garbage", raw: []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3}, want: "gzip"},
		{name: "bzip2 of garbage", raw: []byte("BZh9garbage that is no bzip2 block"), want: "bzip2"},
		{name: "xz header only", raw: []byte{0xfd, '7', 'z', 'X', 'Z', 0, 1, 2}, want: "xz"},
		{name: "no manifest", entries: []testimage.ACIEntry{{Name: "rootfs", Type: tar.TypeDir}}, want: "no manifest in the archive"},
		{name: "no rootfs", entries: []testimage.ACIEntry{{Name: "manifest", Body: manifest}}, want: "no rootfs in the archive"},
		{name: "rootfs a file", entries: []testimage.ACIEntry{{Name: "manifest", Body: manifest}, {Name: "rootfs"}}, want: "rootfs is not a directory"},
		{name: "manifest a directory", entries: []testimage.ACIEntry{{Name: "manifest", Type: tar.TypeDir}, {Name: "rootfs", Type: tar.TypeDir}}, want: "the manifest is not a regular file"},
		{name: "bad JSON", entries: testimage.ACIEntries([]byte("{\n  \"acKind\": \"ImageManifest\",\n  \"name\": oops\n}")), want: "manifest: line 3: invalid character"},
		{name: "wrong JSON type", entries: testimage.ACIEntries([]byte("{\n\"acKind\": \"ImageManifest\",\n\"labels\": {}\n}")), want: "manifest: line 3: json: cannot unmarshal"},
		{name: "wrong kind", entries: testimage.ACIEntries([]byte(`{"acKind":"PodManifest","acVersion":"0.8.11","name":"x"}`)), want: `acKind is "PodManifest"`},
		{name: "no version", entries: testimage.ACIEntries([]byte(`{"acKind":"ImageManifest","name":"x"}`)), want: "acVersion is not set"},
		{name: "no name", entries: testimage.ACIEntries([]byte(`{"acKind":"ImageManifest","acVersion":"0.8.11"}`)), want: "name is not set"},
		{name: "bad name", entries: testimage.ACIEntries([]byte(`{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Bad Name"}`)), want: `name "Bad Name": not a valid AC identifier`},
		{name: "wrong arch", entries: withManifest(map[string]any{"labels": []map[string]string{{"name": "os", "value": "linux"}, {"name": "arch", "value": otherArch()}}}),
			want: "labels: arch is \"" + otherArch() + "\"", appcValid: true},
		{name: "unknown arch", entries: withManifest(map[string]any{"labels": []map[string]string{{"name": "os", "value": "linux"}, {"name": "arch", "value": "mips"}}}),
			want: `arch "mips" is not an appc architecture`},
		{name: "wrong os", entries: withManifest(map[string]any{"labels": []map[string]string{{"name": "os", "value": "freebsd"}}}), want: `os is "freebsd"`, appcValid: true},
		{name: "dependencies", entries: withManifest(map[string]any{"dependencies": []map[string]string{{"imageName": "example.com/base"}}}),
			want: `not supported (this one depends on "example.com/base")`, appcValid: true},
		{name: "path whitelist", entries: withManifest(map[string]any{"pathWhitelist": []string{"/bin/x"}}), want: "pathWhitelist is not supported", appcValid: true},
		{name: "event handlers", entries: withApp("eventHandlers", []map[string]any{{"name": "pre-start", "exec": []string{"/bin/x"}}}), want: "app.eventHandlers", appcValid: true},
		{name: "supplementary GIDs", entries: withApp("supplementaryGIDs", []int{10}), want: "app.supplementaryGIDs", appcValid: true},
		{name: "user as a file", entries: withApp("user", "/etc/owner"), want: "owner-of-a-file form", appcValid: true},
		{name: "no group", entries: withApp("group", ""), want: "app.group is required"},
		{name: "relative working dir", entries: withApp("workingDirectory", "srv"), want: `app.workingDirectory "srv" is not an absolute path`},
		{name: "bad env name", entries: withApp("environment", []map[string]string{{"name": "A B", "value": "x"}}), want: `"A B" is not a valid variable name`},
		{name: "duplicate env", entries: withApp("environment", []map[string]string{{"name": "A", "value": "1"}, {"name": "A", "value": "2"}}), want: `"A" given twice`},
		{name: "bad protocol", entries: withApp("ports", []map[string]any{{"name": "p", "protocol": "icmp", "port": 1}}), want: `protocol "icmp"`, appcValid: true},
		{name: "port range", entries: withApp("ports", []map[string]any{{"name": "p", "protocol": "tcp", "port": 65535, "count": 2}}), want: "outside 1-65535"},
		{name: "socket activated", entries: withApp("ports", []map[string]any{{"name": "p", "protocol": "tcp", "port": 80, "socketActivated": true}}), want: "socket activation", appcValid: true},
		{name: "relative mount point", entries: withApp("mountPoints", []map[string]any{{"name": "d", "path": "data"}}), want: `path "data" is not absolute`, appcValid: true},
		{name: "second manifest", entries: plus(testimage.ACIEntry{Name: "./manifest", Body: manifest}), want: "a second manifest"},
		{name: "file beside rootfs", entries: plus(testimage.ACIEntry{Name: "extra", Body: []byte("x")}), want: `entry "extra": an ACI holds only manifest and rootfs/`},
		{name: "dot-dot escape", entries: plus(testimage.ACIEntry{Name: "rootfs/../../etc/passwd", Body: []byte("x")}), want: "path leaves the archive"},
		{name: "dot-dot into manifest", entries: plus(testimage.ACIEntry{Name: "rootfs/../extra", Body: []byte("x")}), want: `entry "rootfs/../extra": an ACI holds only`},
		{name: "absolute name", entries: plus(testimage.ACIEntry{Name: "/rootfs/etc/passwd", Body: []byte("x")}), want: "path leaves the archive"},
		{name: "hard link out", entries: plus(testimage.ACIEntry{Name: "rootfs/passwd", Type: tar.TypeLink, Link: "../etc/passwd"}), want: "outside rootfs/", appcValid: true},
		{name: "hard link to manifest", entries: plus(testimage.ACIEntry{Name: "rootfs/m", Type: tar.TypeLink, Link: "manifest"}), want: "outside rootfs/", appcValid: true},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".aci")
			if tt.raw != nil {
				if err := os.WriteFile(file, tt.raw, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				comp := testimage.ACICompressions[i%len(testimage.ACICompressions)]
				writeACI(t, file, comp, tt.entries)
			}
			src, err := aci.New(file)
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.Resolve(context.Background())
			if err == nil {
				t.Fatalf("Resolve succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "ACI "+file+": ") {
				t.Errorf("error %q, want %q after \"ACI %s: \"", err, tt.want, file)
			}
			out, aerr := exec.Command(testimage.ACTool(t), "validate", file).CombinedOutput()
			if valid := aerr == nil; valid != tt.appcValid {
				t.Errorf("actool validate: valid=%v (%s), want valid=%v", valid, bytes.TrimSpace(out), tt.appcValid)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := aci.New(filepath.Join(dir, "missing.aci")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New(missing) = %v, want a not-exist error", err)
	}
	if _, err := aci.New(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("New(dir) = %v, want not a regular file", err)
	}
}

func TestNewSourcePlatform(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a.aci")
	m := testimage.ACIManifest(t, "a", nil, map[string]any{"labels": []map[string]string{{"name": "os", "value": "linux"}, {"name": "arch", "value": "aarch64"}}})
	writeACI(t, file, testimage.ACIXz, testimage.ACIEntries(m))
	ref, err := image.ParseReference("aci:" + file)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		arch string
		ok   bool
	}{{"arm64", true}, {"amd64", false}} {
		src, err := aci.NewSource(context.Background(), ref, image.Platform{OS: "linux", Architecture: tt.arch})
		if err != nil {
			t.Fatal(err)
		}
		_, err = src.Resolve(context.Background())
		if (err == nil) != tt.ok {
			t.Errorf("platform linux/%s: Resolve error %v, want ok=%v", tt.arch, err, tt.ok)
		}
	}
}

func TestCancel(t *testing.T) {
	file := filepath.Join(t.TempDir(), "big.aci")
	big := testimage.ACIEntry{Name: "big", Body: bytes.Repeat([]byte{7}, 4<<20)}
	writeACI(t, file, testimage.ACIGzip, testimage.ACIEntries(testimage.ACIManifest(t, "big", nil, nil), big))
	src, err := aci.New(file)
	if err != nil {
		t.Fatal(err)
	}
	res, err := src.Resolve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src.Resolve(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Resolve with a cancelled context: %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	rc, err := res.Layers[0].Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, context.Canceled) {
		t.Errorf("reading the layer after cancel: %v, want context.Canceled", err)
	}
}

// TestStoreUnpack: the store unpacks the ACI's rootfs (not its manifest) at
// the layer's root, verifying the image ID as it reads.
func TestStoreUnpack(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "server.aci")
	writeACI(t, file, testimage.ACIXz, testimage.ACIEntries(fullManifest(t), rootfs...))
	store, err := image.Open(filepath.Join(dir, "store"), image.WithSource(image.TransportACI, aci.NewSource))
	if err != nil {
		t.Fatal(err)
	}
	img, err := store.Get(context.Background(), "aci:"+file)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 1 || img.Config.User != "1000:www" {
		t.Fatalf("image = %+v, want one layer and the ACI's config", img)
	}
	root := img.Layers[0]
	body, err := os.ReadFile(filepath.Join(root, "bin", "server"))
	if err != nil || !bytes.Equal(body, rootfs[1].Body) {
		t.Errorf("bin/server: %q, %v", body, err)
	}
	if target, err := os.Readlink(filepath.Join(root, "bin", "sh")); err != nil || target != "/bin/server" {
		t.Errorf("bin/sh -> %q, %v; want -> /bin/server", target, err)
	}
	a, errA := os.Stat(filepath.Join(root, "bin", "server"))
	b, errB := os.Stat(filepath.Join(root, "bin", "hard"))
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		t.Errorf("bin/hard is not a hard link of bin/server (%v, %v)", errA, errB)
	}
	for _, name := range []string{"manifest", "rootfs"} {
		if _, err := os.Lstat(filepath.Join(root, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s in the unpacked layer: %v", name, err)
		}
	}
}

// TestServerACI: the test server's ACI (for the e2e tests) is a valid appc
// image whose config mirrors the OCI image's, and unpacks to the same
// files, owners and links.
func TestServerACI(t *testing.T) {
	im := testimage.Build(t, "")
	file := testimage.ServerACI(t, im, testimage.ACIGzip)
	testimage.ValidateACI(t, file)
	store, err := image.Open(t.TempDir(), image.WithSource(image.TransportACI, aci.NewSource))
	if err != nil {
		t.Fatal(err)
	}
	img, err := store.Get(context.Background(), "aci:"+file)
	if err != nil {
		t.Fatal(err)
	}
	want := image.Config{
		User:         "0:0",
		Env:          []string{fmt.Sprintf("PORT=%d", testimage.Port), "PATH=/bin"},
		Entrypoint:   []string{testimage.Entrypoint},
		WorkingDir:   "/",
		ExposedPorts: []string{fmt.Sprintf("%d/tcp", testimage.Port)},
		Volumes:      []string{"/data"},
		Labels:       map[string]string{"org.photon-init.test": "httpserver"},
	}
	if !reflect.DeepEqual(img.Config, want) {
		t.Errorf("config = %+v, want %+v", img.Config, want)
	}
	root := img.Layers[0]
	server, err := os.ReadFile(im.Server)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(root, testimage.Entrypoint)); err != nil || !bytes.Equal(got, server) {
		t.Errorf("%s differs from the server binary (%v)", testimage.Entrypoint, err)
	}
	a, errA := os.Stat(filepath.Join(root, testimage.Entrypoint))
	b, errB := os.Stat(filepath.Join(root, testimage.HardlinkFile))
	if errA != nil || errB != nil || !os.SameFile(a, b) || a.Mode().Perm() != 0o755 {
		t.Errorf("%s: not an executable hard link of %s (%v, %v)", testimage.HardlinkFile, testimage.Entrypoint, errA, errB)
	}
	if target, err := os.Readlink(filepath.Join(root, testimage.SymlinkFile)); err != nil || target != filepath.Base(testimage.Entrypoint) {
		t.Errorf("%s -> %q (%v)", testimage.SymlinkFile, target, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("/tmp is not sticky (%v)", err)
	}
	if os.Geteuid() == 0 {
		fi, err := os.Stat(filepath.Join(root, testimage.OwnedFile))
		if err != nil {
			t.Fatal(err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != testimage.OwnedUID || st.Gid != testimage.OwnedGID {
			t.Errorf("%s is not owned by %d:%d", testimage.OwnedFile, testimage.OwnedUID, testimage.OwnedGID)
		}
	}
}
