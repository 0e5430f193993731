package testimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
)

// ACI compressions: the formats appc allows for an ACI file.
const (
	ACIUncompressed = "none"
	ACIGzip         = "gzip"
	ACIBzip2        = "bzip2"
	ACIXz           = "xz"
)

// ACICompressions are all ACI compressions, for table-driven tests.
var ACICompressions = []string{ACIUncompressed, ACIGzip, ACIBzip2, ACIXz}

// ACIEntry is one entry of an ACI archive, named as in the archive
// ("manifest", "rootfs/bin/server").
type ACIEntry struct {
	Name string
	// Type is a tar type flag; 0 means a regular file.
	Type byte
	// Mode is the permission bits; 0 means 0755 for directories and
	// 0644 for files.
	Mode int64
	// Body is a regular file's content.
	Body []byte
	// Link is a symbolic or hard link's target.
	Link string
	// UID and GID own the entry.
	UID, GID int
}

// ACIManifest is the JSON of an appc image manifest (spec v0.8.11) for
// image name with the given app section (nil for none) and extra top-level
// fields (labels, annotations, dependencies...).
func ACIManifest(t testing.TB, name string, app map[string]any, extra map[string]any) []byte {
	t.Helper()
	m := map[string]any{
		"acKind":    "ImageManifest",
		"acVersion": "0.8.11",
		"name":      name,
	}
	if app != nil {
		m["app"] = app
	}
	for k, v := range extra {
		m[k] = v
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatalf("ACI manifest: %v", err)
	}
	return data
}

// ACIEntries is the usual ACI: the manifest, the rootfs directory, then
// the given rootfs entries (named relative to rootfs/).
func ACIEntries(manifest []byte, rootfs ...ACIEntry) []ACIEntry {
	out := []ACIEntry{
		{Name: "manifest", Body: manifest},
		{Name: "rootfs", Type: tar.TypeDir},
	}
	for _, e := range rootfs {
		e.Name = "rootfs/" + e.Name
		out = append(out, e)
	}
	return out
}

// ACITar returns the uncompressed tar of entries, deterministic (fixed
// times, owner 0:0).
func ACITar(entries []ACIEntry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Linkname: e.Link, Uid: e.UID, Gid: e.GID, ModTime: mtime, Format: tar.FormatPAX}
		switch hdr.Typeflag {
		case 0:
			hdr.Typeflag = tar.TypeReg
			fallthrough
		case tar.TypeReg:
			hdr.Size = int64(len(e.Body))
			if hdr.Mode == 0 {
				hdr.Mode = 0o644
			}
		case tar.TypeDir:
			if hdr.Mode == 0 {
				hdr.Mode = 0o755
			}
		default:
			if hdr.Mode == 0 {
				hdr.Mode = 0o777
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar entry %s: %w", e.Name, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.Body); err != nil {
				return nil, fmt.Errorf("tar entry %s: %w", e.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteACI writes entries as an ACI file at path, compressed with
// compression (one of the ACI* constants). It returns the uncompressed
// tar, whose SHA-512 is the appc image ID. bzip2 runs the bzip2 command
// (Go's standard library only decompresses it).
func WriteACI(path, compression string, entries []ACIEntry) ([]byte, error) {
	raw, err := ACITar(entries)
	if err != nil {
		return nil, err
	}
	data, err := compressACI(raw, compression)
	if err != nil {
		return nil, fmt.Errorf("ACI %s: %w", path, err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return nil, err
	}
	return raw, nil
}

// compressACI compresses an ACI's tar.
func compressACI(raw []byte, compression string) ([]byte, error) {
	var buf bytes.Buffer
	var w io.WriteCloser
	switch compression {
	case ACIUncompressed:
		return raw, nil
	case ACIGzip:
		w = gzip.NewWriter(&buf)
	case ACIXz:
		xw, err := xz.NewWriter(&buf)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		w = xw
	case ACIBzip2:
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bzip2", "-c")
		cmd.Stdin = bytes.NewReader(raw)
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("bzip2: %w", err)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unknown compression %q", compression)
	}
	if _, err := w.Write(raw); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// actoolVersion is the appc spec release whose actool checks the ACIs.
const actoolVersion = "v0.8.11"

// actoolGoMod and actoolGoSum pin the build of actool: the proxy refuses to
// list github.com/appc/spec's versions, so `go install ...@v0.8.11` fails
// and the tool is built in a module of its own instead.
const (
	actoolGoMod = `module photon-init.test/actool

go 1.26

require (
	github.com/appc/spec v0.8.11
	github.com/coreos/go-semver v0.3.1
	github.com/spf13/pflag v1.1.0
	go4.org v0.0.0-20260112195520-a5071408f32f
	golang.org/x/net v0.62.0
	gopkg.in/inf.v0 v0.9.1
)
`
	actoolGoSum = `github.com/appc/spec v0.8.11 h1:BFwMCTHSDwanDlAA3ONbsLllTw4pCW85kVm290dNrV4=
github.com/appc/spec v0.8.11/go.mod h1:2F+EK25qCkHIzwA7HQjWIK7r2LOL1gQlou8mm2Fdif0=
github.com/coreos/go-semver v0.3.1 h1:yi21YpKnrx1gt5R+la8n5WgS0kCrsPp33dmEyHReZr4=
github.com/coreos/go-semver v0.3.1/go.mod h1:irMmmIw/7yzSRPWryHsK7EYSg09caPQL03VsM8rvUec=
github.com/spf13/pflag v1.1.0 h1:6W6MbVUrnMb8PEhjkqwsVLY7ryuzRfFHF4mQd7L94ag=
github.com/spf13/pflag v1.1.0/go.mod h1:McXfInJRrz4CZXVZOBLb0bTZqETkiAhM9Iw0y3An2Bg=
go4.org v0.0.0-20260112195520-a5071408f32f h1:ziUVAjmTPwQMBmYR1tbdRFJPtTcQUI12fH9QQjfb0Sw=
go4.org v0.0.0-20260112195520-a5071408f32f/go.mod h1:ZRJnO5ZI4zAwMFp+dS1+V6J6MSyAowhRqAE+DPa1Xp0=
golang.org/x/net v0.62.0 h1:18ELalfM5+XNRwzM2nYqXsZQ9ByS1uhj2O/U7+5jqRY=
golang.org/x/net v0.62.0/go.mod h1:WgDCOTH8iwtB66T4/GfI94AHo/hhdb7Hah9NDseQfiI=
gopkg.in/check.v1 v0.0.0-20161208181325-20d25e280405/go.mod h1:Co6ibVJAznAaIkqp8huTwlJQCZ016jof/cbN4VW5Yz0=
gopkg.in/inf.v0 v0.9.1 h1:73M5CoZyi3ZLMOyDlQh031Cx6N9NDJ2Vvfl76EDAgDc=
gopkg.in/inf.v0 v0.9.1/go.mod h1:cWUDdTG/fYaXco+Dcufb5Vnc6Gp2YChqWtbxRZE0mXw=
gopkg.in/yaml.v3 v3.0.1/go.mod h1:K4uyk7z7BCEPqu6E+C64Yfv1cQ7kz7rIZviUmN+EgEM=
`
)

// ACTool returns the path of appc's actool (spec v0.8.11), building it
// into the repository's .cache/bin on first use. The test is skipped when
// the build fails for want of the network (the module is neither cached
// nor downloadable); any other build failure fails it.
func ACTool(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("actool: %v", err)
	}
	bin := filepath.Join(root, ".cache", "bin", "actool-"+actoolVersion)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	src := filepath.Join(root, ".cache", "actool-"+actoolVersion)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatalf("actool: %v", err)
	}
	for name, body := range map[string]string{"go.mod": actoolGoMod, "go.sum": actoolGoSum} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatalf("actool: %v", err)
		}
	}
	// go test puts $GOROOT/bin first on the PATH of the tests it runs.
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("actool: %v", err)
	}
	// Build into a temporary name, then rename: packages testing in
	// parallel may build it at the same time.
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "build", "-mod=mod", "-o", tmp, "github.com/appc/spec/actool")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		if offline(string(out)) {
			t.Skipf("actool %s cannot be built without the network: %v\n%s", actoolVersion, err, out)
		}
		t.Fatalf("build actool %s: %v\n%s", actoolVersion, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatalf("actool: %v", err)
	}
	return bin
}

// offline reports whether go's output says a module could not be fetched.
func offline(out string) bool {
	for _, s := range []string{"dial tcp", "no such host", "connection refused", "network is unreachable", "i/o timeout", "proxy.golang.org", "GOPROXY", "GOFLAGS=-mod=mod"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}

// ValidateACI runs `actool validate` on an ACI file and fails the test with
// actool's message when it is not a valid appc image.
func ValidateACI(t testing.TB, path string) {
	t.Helper()
	tool := ACTool(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, "validate", path).CombinedOutput()
	if err != nil {
		t.Fatalf("actool validate %s: %v\n%s", path, err, out)
	}
}

// repoRoot finds the photon-init module's root above the working
// directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/photon-init/photon-init\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no photon-init go.mod above the working directory")
		}
		dir = parent
	}
}

// ServerACIName is the appc name of the test server's ACI.
const ServerACIName = "photon-init.test/httpserver"

// appcArchs maps GOARCH to appc's arch label.
var appcArchs = map[string]string{"amd64": "amd64", "arm64": "aarch64", "386": "i386", "arm": "armv7l", "ppc64le": "ppc64le", "s390x": "s390x"}

// ServerACI returns the test server image (im's root filesystem) as an ACI
// compressed with compression, with an app section matching the OCI
// image's config (Entrypoint, PORT and PATH, port 8080/tcp, volume /data,
// the org.photon-init.test label as an annotation) and user 0:0. It is
// built once into im's directory; its reference is "aci:" + the path.
func ServerACI(t testing.TB, im *Images, compression string) string {
	t.Helper()
	// The name's version changes with the image's content.
	path := filepath.Join(im.Dir, "httpserver-aci1-"+compression+".aci")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	arch, ok := appcArchs[runtime.GOARCH]
	if !ok {
		t.Skipf("no appc arch label for %s", runtime.GOARCH)
	}
	manifest := ACIManifest(t, ServerACIName, map[string]any{
		"exec":             []string{Entrypoint},
		"user":             "0",
		"group":            "0",
		"workingDirectory": "/",
		"environment": []map[string]string{
			{"name": "PORT", "value": fmt.Sprint(Port)},
			{"name": "PATH", "value": "/bin"},
		},
		"ports":       []map[string]any{{"name": "http", "protocol": "tcp", "port": Port}},
		"mountPoints": []map[string]any{{"name": "data", "path": "/data"}},
	}, map[string]any{
		"labels": []map[string]string{
			{"name": "version", "value": "1.0.0"},
			{"name": "os", "value": "linux"},
			{"name": "arch", "value": arch},
		},
		"annotations": []map[string]string{{"name": "org.photon-init.test", "value": "httpserver"}},
	})
	rootfs, err := dirEntries(im.Rootfs)
	if err != nil {
		t.Fatalf("ACI of %s: %v", im.Rootfs, err)
	}
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	if _, err := WriteACI(tmp, compression, ACIEntries(manifest, rootfs...)); err != nil {
		os.Remove(tmp)
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// dirEntries lists the tree at dir as ACI rootfs entries in lexical order
// (WalkDir's), with owners, modes, symbolic links and hard links (to the
// first name of an inode, "rootfs/...").
func dirEntries(dir string) ([]ACIEntry, error) {
	seen := map[uint64]string{}
	var out []ACIEntry
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		e, err := dirEntry(dir, p, seen)
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// dirEntry describes the file at p below dir; seen maps the inodes of
// files with several links to their first name.
func dirEntry(dir, p string, seen map[uint64]string) (ACIEntry, error) {
	rel, err := filepath.Rel(dir, p)
	if err != nil {
		return ACIEntry{}, err
	}
	rel = filepath.ToSlash(rel)
	fi, err := os.Lstat(p)
	if err != nil {
		return ACIEntry{}, err
	}
	e := ACIEntry{Name: rel, Mode: int64(fi.Mode().Perm())}
	if fi.Mode()&os.ModeSticky != 0 {
		e.Mode |= 0o1000
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.UID, e.GID = int(st.Uid), int(st.Gid)
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			if first, ok := seen[st.Ino]; ok {
				e.Type, e.Link = tar.TypeLink, "rootfs/"+first
				return e, nil
			}
			seen[st.Ino] = rel
		}
	}
	switch {
	case fi.IsDir():
		e.Type = tar.TypeDir
	case fi.Mode()&os.ModeSymlink != 0:
		e.Type = tar.TypeSymlink
		e.Link, err = os.Readlink(p)
	case fi.Mode().IsRegular():
		e.Body, err = os.ReadFile(p)
	default:
		err = fmt.Errorf("%s: unsupported file type %s", p, fi.Mode().Type())
	}
	return e, err
}
