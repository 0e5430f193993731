package registry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
	"github.com/photon-init/photon-init/internal/testimage"
	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/image/registry"
)

// otherArch is an architecture that is not this machine's.
func otherArch() string {
	if runtime.GOARCH == "s390x" {
		return "amd64"
	}
	return "s390x"
}

// loopbackUp brings up lo in the test's new network namespace.
func loopbackUp(t *testing.T) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
}

// noAuth is a credentials file that does not exist.
func noAuth(t *testing.T) string { return filepath.Join(t.TempDir(), "no-auth.json") }

// resolve resolves ref with opts, failing the test on error.
func resolve(t *testing.T, ref string, opts registry.Options) *image.Resolved {
	t.Helper()
	res, err := resolveErr(ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func resolveErr(ref string, opts registry.Options) (*image.Resolved, error) {
	src, err := registry.New(ref, opts)
	if err != nil {
		return nil, err
	}
	return src.Resolve(context.Background())
}

// readLayer reads a layer through Open and checks its digest.
func readLayer(t *testing.T, l image.Layer) {
	t.Helper()
	rc, err := l.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("read layer %s: %v", l.Digest, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != l.Digest || n != l.Size {
		t.Errorf("layer %s: read %d bytes with digest %s, want %d bytes", l.Digest, n, got, l.Size)
	}
}

// checkServerImage checks the config and layers of the test image.
func checkServerImage(t *testing.T, res *image.Resolved, layerType string) {
	t.Helper()
	c := res.Config
	if !slices.Equal(c.Entrypoint, []string{testimage.Entrypoint}) || !slices.Contains(c.Env, fmt.Sprintf("PORT=%d", testimage.Port)) ||
		!slices.Equal(c.ExposedPorts, []string{fmt.Sprintf("%d/tcp", testimage.Port)}) || c.StopSignal != "SIGTERM" {
		t.Errorf("config = %+v, want the test server's", c)
	}
	if len(res.Layers) != 1 {
		t.Fatalf("%d layers, want 1", len(res.Layers))
	}
	l := res.Layers[0]
	if l.MediaType != layerType || l.DiffID == "" || l.Size <= 0 {
		t.Errorf("layer = %+v, want media type %s, a diff ID and a size", l, layerType)
	}
	readLayer(t, l)
}

// caPEM is the registry's CA certificate in PEM.
func caPEM(t *testing.T, reg *testimage.Registry) []byte {
	t.Helper()
	data, err := os.ReadFile(reg.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkPull checks a pull's outcome: the test image with digest when want
// is "", else an error containing want.
func checkPull(t *testing.T, res *image.Resolved, err error, digest, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatal(err)
	case want == "":
		if res.Digest != digest {
			t.Errorf("Digest = %s, want %s", res.Digest, digest)
		}
		checkServerImage(t, res, ociLayer)
	case err == nil || !strings.Contains(err.Error(), want):
		t.Errorf("pull: %v, want an error containing %q", err, want)
	default:
		t.Logf("error: %v", err)
	}
}

const (
	ociLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
	dockerLayer = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// configOf returns the config digest of app:1.0 at host.
func configOf(t *testing.T, host string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+host+"/v2/app/manifests/1.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Config struct {
			Digest string `json:"digest"`
		} `json:"config"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || m.Config.Digest == "" {
		t.Fatalf("manifest of app:1.0: %v", err)
	}
	return m.Config.Digest
}

// TestRegistry pulls from real registries (docker-registry 2.8) that the
// test runs in its own network and PID namespaces, so nothing reaches or
// outlives the host's.
func TestRegistry(t *testing.T) {
	if !nstest.Run(t, unix.CLONE_NEWNET|unix.CLONE_NEWPID) {
		return
	}
	loopbackUp(t)
	im := testimage.Build(t, "")
	base := "oci:" + im.OCILayout + ":" + testimage.Tag

	plain := testimage.StartRegistry(t, testimage.RegistryOptions{})
	ociDigest := plain.Push(t, base, "app:1.0", false, "oci")
	dockerDigest := plain.Push(t, base, "app:docker", false, "v2s2")
	layout, index, native, other := testimage.MultiArchLayout(t, im, runtime.GOARCH, otherArch())
	if got := plain.Push(t, "oci:"+layout+":"+testimage.MultiArchTag, "multi:1", true, ""); got != index {
		t.Fatalf("pushed index %s, want %s", got, index)
	}
	insecure := registry.Options{Insecure: []string{plain.Host}, AuthFile: noAuth(t)}

	t.Run("pull", func(t *testing.T) {
		for _, tt := range []struct {
			ref, digest, layerType string
		}{
			{plain.Host + "/app:1.0", ociDigest, ociLayer},
			{"docker://" + plain.Host + "/app:1.0", ociDigest, ociLayer},
			{plain.Host + "/app:docker", dockerDigest, dockerLayer},
			{plain.Host + "/app@" + ociDigest, ociDigest, ociLayer},
			{plain.Host + "/app:docker@" + ociDigest, ociDigest, ociLayer},
			{plain.Host + "/multi:1", native, ociLayer},
			{plain.Host + "/multi@" + index, native, ociLayer},
		} {
			t.Run(tt.ref, func(t *testing.T) {
				res := resolve(t, tt.ref, insecure)
				if res.Digest != tt.digest {
					t.Errorf("Digest = %s, want %s", res.Digest, tt.digest)
				}
				checkServerImage(t, res, tt.layerType)
			})
		}
	})

	t.Run("platform", func(t *testing.T) {
		opts := insecure
		opts.Platform = image.Platform{OS: "linux", Architecture: otherArch()}
		if res := resolve(t, plain.Host+"/multi:1", opts); res.Digest != other {
			t.Errorf("Digest for linux/%s = %s, want %s", otherArch(), res.Digest, other)
		}
		opts.Platform.Architecture = "riscv64"
		_, err := resolveErr(plain.Host+"/multi:1", opts)
		if err == nil || !strings.Contains(err.Error(), "no image for platform linux/riscv64") {
			t.Errorf("pull for linux/riscv64: %v, want no image for the platform", err)
		}
		// A single-platform image for another architecture.
		plain.Push(t, "oci:"+layout+":"+testimage.OtherArchTag, "app:"+otherArch(), false, "")
		_, err = resolveErr(plain.Host+"/app:"+otherArch(), insecure)
		if err == nil || !strings.Contains(err.Error(), "image is for linux/"+otherArch()) {
			t.Errorf("pull of a linux/%s image: %v, want a platform error", otherArch(), err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		absent := "sha256:" + strings.Repeat("0", 64)
		closed := testimage.ClosedPort(t)
		for _, tt := range []struct {
			name, ref string
			opts      registry.Options
			want      string
		}{
			{"missing tag", plain.Host + "/app:nope", insecure, "pull " + plain.Host + "/app:nope: manifest unknown (HTTP 404)"},
			{"unknown repository", plain.Host + "/nothing:1", insecure, "pull " + plain.Host + "/nothing:1: "},
			{"absent digest", plain.Host + "/app@" + absent, insecure, "pull " + plain.Host + "/app@" + absent + ": manifest unknown (HTTP 404)"},
			{"not insecure", plain.Host + "/app:1.0", registry.Options{AuthFile: noAuth(t)}, "plain HTTP refused to " + plain.Host},
			{"nothing listening", closed + "/app:1.0", registry.Options{Insecure: []string{closed}, AuthFile: noAuth(t)}, "connection refused"},
			{"not a registry reference", "oci:/some/dir", insecure, "not a registry reference"},
			{"bad reference", plain.Host + "/App:1", insecure, "must be lowercase"},
			{"bad tag", plain.Host + "/app:a b", insecure, "invalid reference format"},
			{"bad insecure entry", plain.Host + "/app:1.0", registry.Options{Insecure: []string{"http://x"}}, `insecure registry "http://x"`},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := resolveErr(tt.ref, tt.opts)
				t.Logf("error: %v", err)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("pull %s: %v, want an error containing %q", tt.ref, err, tt.want)
				}
			})
		}
		var he *registry.HTTPError
		if _, err := resolveErr(plain.Host+"/app:nope", insecure); !errors.As(err, &he) || he.StatusCode != 404 || !slices.Equal(he.Codes, []string{"MANIFEST_UNKNOWN"}) {
			t.Errorf("missing tag: %#v, want an HTTPError 404 MANIFEST_UNKNOWN", err)
		}
	})

	t.Run("tampered", func(t *testing.T) {
		res := resolve(t, plain.Host+"/app:1.0", insecure)
		target, err := url.Parse(plain.URL())
		if err != nil {
			t.Fatal(err)
		}
		var corrupt string // path suffix whose answers get one more byte
		proxy := httptest.NewServer(&httputil.ReverseProxy{
			Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = target.Host },
			ModifyResponse: func(resp *http.Response) error {
				if corrupt == "" || !strings.HasSuffix(resp.Request.URL.Path, corrupt) || resp.StatusCode != 200 {
					return nil
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				resp.Body.Close()
				body = append(body, ' ')
				resp.Body = io.NopCloser(bytes.NewReader(body))
				resp.ContentLength = int64(len(body))
				resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
				return nil
			},
		})
		defer proxy.Close()
		host := strings.TrimPrefix(proxy.URL, "http://")
		opts := registry.Options{Insecure: []string{host}, AuthFile: noAuth(t)}

		corrupt = "/manifests/" + ociDigest
		if _, err := resolveErr(host+"/app@"+ociDigest, opts); err == nil || !strings.Contains(err.Error(), "does not match requested digest") {
			t.Errorf("tampered manifest by digest: %v, want a digest mismatch", err)
		}
		configDigest := configOf(t, plain.Host)
		corrupt = "/blobs/" + configDigest
		if _, err := resolveErr(host+"/app:1.0", opts); err == nil || !strings.Contains(err.Error(), "config: read blob "+configDigest+": error verifying sha256 checksum") {
			t.Errorf("tampered config: %v, want a digest mismatch", err)
		}
		corrupt = "/blobs/" + res.Layers[0].Digest
		src, err := registry.New(host+"/app:1.0", opts)
		if err != nil {
			t.Fatal(err)
		}
		res2, err := src.Resolve(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		rc, err := res2.Layers[0].Open(context.Background())
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
		if err == nil {
			t.Errorf("a tampered layer read without error")
		}
	})

	t.Run("stall and cancel", func(t *testing.T) {
		res := resolve(t, plain.Host+"/app:1.0", insecure)
		layerPath := "/blobs/" + res.Layers[0].Digest
		target, _ := url.Parse(plain.URL())
		rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = target.Host }}
		stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, layerPath) {
				rp.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(res.Layers[0].Size))
			w.WriteHeader(http.StatusOK)
			w.Write(make([]byte, 100))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}))
		defer stalled.Close()
		host := strings.TrimPrefix(stalled.URL, "http://")
		opts := registry.Options{Insecure: []string{"127.0.0.1"}, AuthFile: noAuth(t), StallTimeout: 300 * time.Millisecond}
		res2 := resolve(t, host+"/app:1.0", opts)
		start := time.Now()
		rc, err := res2.Layers[0].Open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err == nil || !strings.Contains(err.Error(), "download stalled") || time.Since(start) > 5*time.Second {
			t.Errorf("stalled download: %v after %s, want a stall error after about 300ms", err, time.Since(start))
		}

		ctx, cancel := context.WithCancel(context.Background())
		rc, err = res2.Layers[0].Open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled download: %v, want context.Canceled", err)
		}

		src, err := registry.New(plain.Host+"/app:1.0", insecure)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel = context.WithCancel(context.Background())
		cancel()
		if _, err := src.Resolve(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Resolve with a cancelled context: %v, want context.Canceled", err)
		}
		opts.Timeout = 200 * time.Millisecond
		hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
		defer hang.Close()
		start = time.Now()
		_, err = resolveErr(strings.TrimPrefix(hang.URL, "http://")+"/app:1.0", opts)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
			t.Errorf("Resolve from a server that never answers: %v after %s, want the 200ms timeout", err, time.Since(start))
		}
	})

	t.Run("store", func(t *testing.T) {
		fn, err := registry.NewSource(insecure)
		if err != nil {
			t.Fatal(err)
		}
		store, err := image.Open(t.TempDir(), image.WithSource(image.TransportRegistry, fn))
		if err != nil {
			t.Fatal(err)
		}
		img, err := store.Get(context.Background(), plain.Host+"/multi:1")
		if err != nil {
			t.Fatal(err)
		}
		if img.Digest != native || len(img.Layers) != 1 {
			t.Fatalf("image = %+v, want %s with one layer", img, native)
		}
		if _, err := os.Stat(filepath.Join(img.Layers[0], strings.TrimPrefix(testimage.Entrypoint, "/"))); err != nil {
			t.Errorf("unpacked image: %v", err)
		}
	})

	t.Run("basic auth over TLS", func(t *testing.T) {
		reg := testimage.StartRegistry(t, testimage.RegistryOptions{TLS: true, Auth: testimage.RegistryBasic})
		digest := reg.Push(t, base, "private/app:1.0", false, "")
		ref := reg.Host + "/private/app:1.0"
		good := testimage.AuthFile(t, map[string]map[string]string{reg.Host: {"auth": testimage.BasicAuth(reg.User, reg.Password)}})
		asURL := testimage.AuthFile(t, map[string]map[string]string{"https://" + reg.Host + "/v1/": {"username": reg.User, "password": reg.Password}})
		wrong := testimage.AuthFile(t, map[string]map[string]string{reg.Host: {"auth": testimage.BasicAuth(reg.User, "wrong")}})
		for _, tt := range []struct {
			name string
			opts registry.Options
			want string // "" for success
		}{
			{"auth", registry.Options{CACerts: caPEM(t, reg), AuthFile: good}, ""},
			{"username and password under a URL", registry.Options{CACerts: caPEM(t, reg), AuthFile: asURL}, ""},
			{"no credentials", registry.Options{CACerts: caPEM(t, reg), AuthFile: noAuth(t)}, "(HTTP 401) (credentials for " + reg.Host + " are read from "},
			{"wrong password", registry.Options{CACerts: caPEM(t, reg), AuthFile: wrong}, "(HTTP 401)"},
			{"unknown CA", registry.Options{AuthFile: good}, "certificate signed by unknown authority"},
			{"not a certificate", registry.Options{AuthFile: good, CACerts: []byte("junk")}, "no PEM certificate found"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				res, err := resolveErr(ref, tt.opts)
				checkPull(t, res, err, digest, tt.want)
			})
		}
	})

	t.Run("token auth", func(t *testing.T) {
		reg := testimage.StartRegistry(t, testimage.RegistryOptions{TLS: true, Auth: testimage.RegistryToken, RefreshToken: "refresh-photon"})
		digest := reg.Push(t, base, "private/app:1.0", false, "")
		ref := reg.Host + "/private/app:1.0"
		for _, tt := range []struct {
			name  string
			entry map[string]string
			want  string
		}{
			{"password", map[string]string{"auth": testimage.BasicAuth(reg.User, reg.Password)}, ""},
			{"identity token", map[string]string{"identitytoken": "refresh-photon"}, ""},
			{"anonymous", nil, "(HTTP 401)"},
			{"wrong identity token", map[string]string{"identitytoken": "stale"}, "(HTTP 401 from localhost:"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				auth := noAuth(t)
				if tt.entry != nil {
					auth = testimage.AuthFile(t, map[string]map[string]string{reg.Host: tt.entry})
				}
				before := reg.TokensIssued.Load()
				res, err := resolveErr(ref, registry.Options{CACerts: caPEM(t, reg), AuthFile: auth})
				checkPull(t, res, err, digest, tt.want)
				if tt.want == "" && reg.TokensIssued.Load() == before {
					t.Error("no bearer token was issued")
				}
			})
		}
	})
}
