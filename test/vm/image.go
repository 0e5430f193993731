package vm

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ServerImageTag is the tag of the server image in its OCI layout.
const ServerImageTag = "latest"

// ServerReady matches the line the server image prints once it listens,
// with the guest uptime at which it started (see ParseUptime).
var ServerReady = regexp.MustCompile(`httpserver: listening on :\d+ uptime=(\d+\.\d+)`)

// BuildServerImage compiles the project's small HTTP server
// (internal/testimage/httpserver, static) and writes it as a one-layer OCI
// image layout in dir, tagged ServerImageTag: the same kind of image users
// bring, made without any external tool. The demo and the benchmark boot
// it.
func BuildServerImage(ctx context.Context, repo, dir string) error {
	work, err := os.MkdirTemp("", "photon-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	server := filepath.Join(work, "httpserver")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", server, "./internal/testimage/httpserver")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the demo server: %w\n%s", err, out)
	}
	bin, err := os.ReadFile(server)
	if err != nil {
		return err
	}
	layer, diffID, err := demoLayer(bin)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	w := layoutWriter{dir: dir}
	layerDesc := w.blob(ocispec.MediaTypeImageLayerGzip, layer)
	config, err := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config: ocispec.ImageConfig{
			Entrypoint:   []string{"/bin/httpserver"},
			Env:          []string{"PATH=/bin", "PORT=8080"},
			ExposedPorts: map[string]struct{}{"8080/tcp": {}},
			StopSignal:   "SIGTERM",
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	})
	if err != nil {
		return err
	}
	configDesc := w.blob(ocispec.MediaTypeImageConfig, config)
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	if err != nil {
		return err
	}
	manifestDesc := w.blob(ocispec.MediaTypeImageManifest, manifest)
	manifestDesc.Annotations = map[string]string{ocispec.AnnotationRefName: ServerImageTag}
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	})
	if err != nil {
		return err
	}
	w.file(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`))
	w.file(ocispec.ImageIndexFile, index)
	return w.err
}

// demoLayer is a gzipped tar holding /bin/httpserver and a sticky /tmp,
// and the digest of the uncompressed tar (the layer's DiffID).
func demoLayer(server []byte) (gz []byte, diffID digest.Digest, err error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, h := range []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: "bin/httpserver", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(server))},
	} {
		if err := tw.WriteHeader(h); err != nil {
			return nil, "", err
		}
	}
	if _, err := tw.Write(server); err != nil {
		return nil, "", err
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := io.Copy(zw, bytes.NewReader(raw.Bytes())); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return out.Bytes(), digest.FromBytes(raw.Bytes()), nil
}

// layoutWriter writes the files of an OCI image layout, keeping the first
// error.
type layoutWriter struct {
	dir string
	err error
}

// blob stores data under blobs/sha256/ and describes it.
func (w *layoutWriter) blob(mediaType string, data []byte) ocispec.Descriptor {
	sum := sha256.Sum256(data)
	d := digest.NewDigestFromBytes(digest.SHA256, sum[:])
	w.file(filepath.Join("blobs", "sha256", d.Encoded()), data)
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

func (w *layoutWriter) file(name string, data []byte) {
	if w.err != nil {
		return
	}
	p := filepath.Join(w.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.err = err
		return
	}
	w.err = os.WriteFile(p, data, 0o644)
}
