// Package testimage builds the container images the project's tests use,
// around a small static HTTP server (./httpserver): an OCI image layout
// made with umoci, the same image as an oci-archive (a tar of the layout),
// as a docker-archive made by skopeo (the legacy "docker save" layout) and
// in Docker 25's OCI-layout-inside form, and a multi-layer variant whose
// upper layers hold a whiteout and an opaque directory.
//
// Images are built once per set of inputs (the server's source, the Go,
// umoci and skopeo versions) into a cache directory shared by every test
// binary, under a lock, and reused by later runs; Build(t, dir) with a
// directory builds there instead. Tests needing umoci or skopeo install them
// through scripts/deps.sh and skip under -short only when they cannot be
// installed.
//
// Other image kinds (ACI, a registry) are built by their packages' tests
// from what Images exposes: the server binary, the root filesystem and the
// OCI layout.
package testimage

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Facts about the images, the same for every build.
const (
	// Tag is the OCI layout tag of the single-layer image.
	Tag = "latest"
	// MultiTag is the OCI layout tag of the multi-layer image.
	MultiTag = "multi"
	// DockerName is the name:tag inside the docker-archives.
	DockerName = "photon-test/httpserver:latest"
	// Entrypoint is the server's path in the images.
	Entrypoint = "/bin/httpserver"
	// Port is the port the server listens on by default ($PORT in the
	// image config).
	Port = 8080
	// Greeting starts the body of the server's answer to GET /.
	Greeting = "hello from photon-init test httpserver"
	// ReadyLine starts the line the server prints once listening.
	ReadyLine = "httpserver: listening on"
	// OwnedFile is a file owned by OwnedUID:OwnedGID (when built as root).
	OwnedFile = "/home/app/owned.txt"
	OwnedUID  = 1000
	OwnedGID  = 1000
	// HardlinkFile is a hardlink to Entrypoint; SymlinkFile a relative
	// symlink to it.
	HardlinkFile = "/bin/httpserver-hardlink"
	SymlinkFile  = "/bin/httpserver-symlink"
	// WhitedOut is present in the base layer and deleted by a whiteout in
	// the multi-layer image; Kept stays.
	WhitedOut = "/data/old.txt"
	Kept      = "/data/keep.txt"
	// OpaqueDir is replaced in the multi-layer image by an opaque layer:
	// OpaqueOld is gone, OpaqueNew is the only file in it.
	OpaqueDir = "/opq"
	OpaqueOld = "/opq/a.txt"
	OpaqueNew = "/opq/c.txt"
)

// Images are the built test images.
type Images struct {
	// Dir holds everything below.
	Dir string
	// Server is the static httpserver binary.
	Server string
	// Rootfs is the base image's root filesystem as a directory (usable
	// as a rootfs: image, or to build other image kinds).
	Rootfs string
	// OCILayout is the OCI image layout directory holding Tag and
	// MultiTag.
	OCILayout string
	// OCIArchive is the layout as a tar file.
	OCIArchive string
	// DockerArchive is the base image as skopeo writes a docker-archive
	// (legacy layout: config and layer tars named by hex digests).
	DockerArchive string
	// DockerArchiveOCI is the base image in the form "docker save" has
	// written since Docker 25: manifest.json beside an OCI layout whose
	// blobs it names.
	DockerArchiveOCI string
	// BaseLayers and MultiLayers are the numbers of layers of the two
	// images.
	BaseLayers, MultiLayers int
}

// OCIRef is the single-layer image in the OCI layout.
func (im *Images) OCIRef() string { return "oci:" + im.OCILayout + ":" + Tag }

// OCIMultiRef is the multi-layer image (whiteout, opaque directory).
func (im *Images) OCIMultiRef() string { return "oci:" + im.OCILayout + ":" + MultiTag }

// OCIArchiveRef is the single-layer image in the oci-archive.
func (im *Images) OCIArchiveRef() string { return "oci-archive:" + im.OCIArchive + ":" + Tag }

// DockerArchiveRef is the image in skopeo's (legacy) docker-archive.
func (im *Images) DockerArchiveRef() string {
	return "docker-archive:" + im.DockerArchive + ":" + DockerName
}

// DockerArchiveOCIRef is the image in the Docker 25+ docker-archive form.
func (im *Images) DockerArchiveOCIRef() string {
	return "docker-archive:" + im.DockerArchiveOCI + ":" + DockerName
}

// RootfsRef is the base image's root filesystem as a rootfs: reference.
func (im *Images) RootfsRef() string { return "rootfs:" + im.Rootfs }

// builder version: bump when the images' contents change.
const version = "3"

// built caches the images per directory for this test binary.
var built = struct {
	sync.Mutex
	m map[string]*Images
}{m: map[string]*Images{}}

// Build returns the test images, building them in dir ("" for the shared
// cache directory) unless this process or an earlier run already did. It
// fails t when a tool is missing or a step fails (skipping under -short
// when umoci or skopeo is not installed).
func Build(t testing.TB, dir string) *Images {
	t.Helper()
	for _, tool := range []string{"umoci", "skopeo"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testing.Short() {
				t.Skipf("testimage: %s not installed (scripts/deps.sh installs it)", tool)
			}
			t.Fatalf("testimage: %s not installed: run scripts/deps.sh", tool)
		}
	}
	built.Lock()
	defer built.Unlock()
	if dir == "" {
		key, err := cacheKey()
		if err != nil {
			t.Fatalf("testimage: %v", err)
		}
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		dir = filepath.Join(base, "photon-init", "testimage", key)
	}
	if im, ok := built.m[dir]; ok {
		return im
	}
	im, err := buildLocked(dir)
	if err != nil {
		t.Fatalf("testimage: %v", err)
	}
	built.m[dir] = im
	return im
}

// srcDir is this package's source directory.
func srcDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot find the package source")
	}
	return filepath.Dir(file), nil
}

// cacheKey hashes what the images are made from.
func cacheKey() (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, version, runtime.Version(), os.Geteuid() == 0)
	src, err := srcDir()
	if err != nil {
		return "", err
	}
	for _, f := range []string{"testimage.go", "httpserver/main.go"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	for _, tool := range []string{"umoci", "skopeo"} {
		out, err := exec.Command(tool, "--version").Output()
		if err != nil {
			return "", fmt.Errorf("%s --version: %w", tool, err)
		}
		h.Write(out)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// buildLocked builds into dir under a file lock, unless a complete build is
// there.
func buildLocked(dir string) (*Images, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	im := layout(dir)
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return im, nil
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := build(layout(tmp)); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "complete"), nil, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return im, nil
}

// layout names the files of a build in dir.
func layout(dir string) *Images {
	return &Images{
		Dir:              dir,
		Server:           filepath.Join(dir, "httpserver"),
		Rootfs:           filepath.Join(dir, "rootfs"),
		OCILayout:        filepath.Join(dir, "oci"),
		OCIArchive:       filepath.Join(dir, "oci-archive.tar"),
		DockerArchive:    filepath.Join(dir, "docker-archive.tar"),
		DockerArchiveOCI: filepath.Join(dir, "docker-archive-oci.tar"),
		BaseLayers:       1,
		MultiLayers:      3,
	}
}

// run runs a command, returning its output in the error.
func run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// build makes every image of im.
func build(im *Images) error {
	if err := os.MkdirAll(im.Dir, 0o755); err != nil {
		return err
	}
	src, err := srcDir()
	if err != nil {
		return err
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", im.Server, ".")
	cmd.Dir = filepath.Join(src, "httpserver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build httpserver: %w\n%s", err, out)
	}
	if err := makeRootfs(im); err != nil {
		return fmt.Errorf("root filesystem: %w", err)
	}
	opq := filepath.Join(im.Dir, "opq-new")
	if err := writeFiles(opq, map[string]string{filepath.Base(OpaqueNew): "new\n"}); err != nil {
		return err
	}
	rootless := []string{}
	if os.Geteuid() != 0 {
		rootless = []string{"--rootless"}
	}
	base := im.OCILayout + ":" + Tag
	multi := im.OCILayout + ":" + MultiTag
	steps := [][]string{
		{"init", "--layout", im.OCILayout},
		{"new", "--image", base},
		append(append([]string{"insert"}, rootless...), "--image", base, im.Rootfs, "/"),
		{"config", "--image", base,
			"--config.entrypoint", Entrypoint,
			"--config.env", fmt.Sprintf("PORT=%d", Port),
			"--config.env", "PATH=/bin",
			"--config.exposedports", fmt.Sprintf("%d/tcp", Port),
			"--config.workingdir", "/",
			"--config.volume", "/data",
			"--config.stopsignal", "SIGTERM",
			"--config.label", "org.photon-init.test=httpserver",
			"--author", "photon-init testimage"},
		append(append([]string{"insert"}, rootless...), "--image", base, "--tag", MultiTag, "--whiteout", WhitedOut),
		append(append([]string{"insert"}, rootless...), "--image", multi, "--opaque", opq, OpaqueDir),
		{"gc", "--layout", im.OCILayout},
	}
	for _, args := range steps {
		if err := run("umoci", args...); err != nil {
			return err
		}
	}
	if err := tarDir(im.OCILayout, im.OCIArchive); err != nil {
		return fmt.Errorf("oci-archive: %w", err)
	}
	if err := run("skopeo", "--insecure-policy", "copy", "--quiet",
		"oci:"+base, "docker-archive:"+im.DockerArchive+":"+DockerName); err != nil {
		return err
	}
	if err := dockerOCIArchive(im); err != nil {
		return fmt.Errorf("docker-archive (OCI form): %w", err)
	}
	return nil
}

// writeFiles writes files (name → content) under dir.
func writeFiles(dir string, files map[string]string) error {
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// makeRootfs lays out the base image's root filesystem.
func makeRootfs(im *Images) error {
	rel := func(p string) string { return strings.TrimPrefix(p, "/") }
	if err := writeFiles(im.Rootfs, map[string]string{
		rel(WhitedOut):          "old\n",
		rel(Kept):               "keep\n",
		rel(OpaqueOld):          "a\n",
		"opq/b.txt":             "b\n",
		rel(OwnedFile):          "owned\n",
		"etc/photon-test-image": "httpserver\n",
		"etc/passwd":            "root:x:0:0:root:/root:/bin/httpserver\napp:x:1000:1000:app:/home/app:/bin/httpserver\n",
		"etc/group":             "root:x:0:\napp:x:1000:\n",
		"tmp/.keep":             "",
	}); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(im.Rootfs, "tmp"), fs.ModeSticky|0o777); err != nil {
		return err
	}
	bin := filepath.Join(im.Rootfs, rel(Entrypoint))
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	data, err := os.ReadFile(im.Server)
	if err != nil {
		return err
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		return err
	}
	if err := os.Link(bin, filepath.Join(im.Rootfs, rel(HardlinkFile))); err != nil {
		return err
	}
	if err := os.Symlink(filepath.Base(Entrypoint), filepath.Join(im.Rootfs, rel(SymlinkFile))); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		for _, p := range []string{filepath.Dir(OwnedFile), OwnedFile} {
			if err := os.Lchown(filepath.Join(im.Rootfs, rel(p)), OwnedUID, OwnedGID); err != nil {
				return err
			}
		}
	}
	return nil
}

// tarDir writes the tree at dir as an uncompressed tar, sorted, with fixed
// times.
func tarDir(dir, out string) error {
	var paths []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	}); err != nil {
		return err
	}
	sort.Strings(paths)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		if err := addToTar(tw, p, filepath.ToSlash(rel)); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// addToTar adds the file or directory at p as name.
func addToTar(tw *tar.Writer, p, name string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	h, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return err
	}
	h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname = name, time.Unix(0, 0), 0, 0, "", ""
	if fi.IsDir() {
		h.Name += "/"
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if fi.Mode().IsRegular() {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(tw, f); err != nil {
			return err
		}
	}
	return nil
}

// dockerOCIArchive writes the base image as Docker 25+ "docker save" does:
// the OCI layout (oci-layout, index.json, blobs/) plus a manifest.json
// naming the config and layers by their blob paths.
func dockerOCIArchive(im *Images) error {
	readJSON := func(p string, v any) error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, v)
	}
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	var index struct {
		Manifests []desc `json:"manifests"`
	}
	if err := readJSON(filepath.Join(im.OCILayout, "index.json"), &index); err != nil {
		return err
	}
	blob := func(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }
	var mdesc *desc
	for i, d := range index.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == Tag {
			mdesc = &index.Manifests[i]
		}
	}
	if mdesc == nil {
		return fmt.Errorf("no %q in %s", Tag, im.OCILayout)
	}
	var m struct {
		Config desc   `json:"config"`
		Layers []desc `json:"layers"`
	}
	if err := readJSON(filepath.Join(im.OCILayout, blob(mdesc.Digest)), &m); err != nil {
		return err
	}
	entry := map[string]any{"Config": blob(m.Config.Digest), "RepoTags": []string{DockerName}}
	var layers []string
	files := []string{blob(mdesc.Digest), blob(m.Config.Digest)}
	for _, l := range m.Layers {
		layers = append(layers, blob(l.Digest))
		files = append(files, blob(l.Digest))
	}
	entry["Layers"] = layers
	manifest, err := json.Marshal([]any{entry})
	if err != nil {
		return err
	}
	mdesc.Annotations = map[string]string{"io.containerd.image.name": "docker.io/" + DockerName, "org.opencontainers.image.ref.name": "latest"}
	idx, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []desc{*mdesc}})
	if err != nil {
		return err
	}
	stage := filepath.Join(im.Dir, "docker-oci-stage")
	if err := writeFiles(stage, map[string]string{
		"manifest.json": string(manifest),
		"index.json":    string(idx),
		"oci-layout":    `{"imageLayoutVersion":"1.0.0"}`,
	}); err != nil {
		return err
	}
	for _, f := range files {
		dst := filepath.Join(stage, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Link(filepath.Join(im.OCILayout, filepath.FromSlash(f)), dst); err != nil {
			return err
		}
	}
	if err := tarDir(stage, im.DockerArchiveOCI); err != nil {
		return err
	}
	return os.RemoveAll(stage)
}
