package testimage

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// RegistryBinary is Debian's docker-registry (distribution 2.8), which
// scripts/deps.sh installs.
const RegistryBinary = "/usr/bin/docker-registry"

// Registry auth kinds for RegistryOptions.Auth.
const (
	// RegistryNoAuth lets anyone push and pull.
	RegistryNoAuth = ""
	// RegistryBasic is htpasswd (bcrypt) Basic authentication.
	RegistryBasic = "htpasswd"
	// RegistryToken is Docker's token authentication: the registry
	// answers 401 with a Bearer challenge naming a token service, which
	// the test runs (see Registry.TokenURL).
	RegistryToken = "token"
)

// RegistryOptions configures StartRegistry.
type RegistryOptions struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 and localhost
	// signed by Registry.CA; otherwise plain HTTP.
	TLS bool
	// Auth is one of the Registry* auth kinds.
	Auth string
	// User and Password are the one account (default "photon" and
	// "secret").
	User, Password string
	// RefreshToken is an OAuth2 refresh token the token service also
	// accepts for User (an "identitytoken" in config.json).
	RefreshToken string
}

// Registry is a running docker-registry on 127.0.0.1, storing in a
// temporary directory, stopped when the test ends.
type Registry struct {
	// Host is "127.0.0.1:PORT".
	Host string
	// CA signs the registry's (and the token service's) certificate;
	// CAFile is it in PEM. Nil and "" without TLS.
	CA     *x509.CertPool
	CAFile string
	// User and Password are the account when there is authentication.
	User, Password string
	// TokenURL is the token service's realm (with RegistryToken).
	TokenURL string
	// TokensIssued counts the bearer tokens the token service gave out.
	TokensIssued atomic.Int64

	opts RegistryOptions
}

// StartRegistry starts docker-registry with a configuration of its own on
// a free port of 127.0.0.1 (never the system service's). The test fails
// when docker-registry is not installed, or skips under -short.
func StartRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	if _, err := os.Stat(RegistryBinary); err != nil {
		if testing.Short() {
			t.Skipf("%s not installed (scripts/deps.sh installs docker-registry)", RegistryBinary)
		}
		t.Fatalf("%s not installed: run scripts/deps.sh", RegistryBinary)
	}
	if opts.User == "" {
		opts.User, opts.Password = "photon", "secret"
	}
	dir := t.TempDir()
	r := &Registry{User: opts.User, Password: opts.Password, opts: opts}
	var certFile, keyFile string
	var cert tls.Certificate
	if opts.TLS || opts.Auth == RegistryToken {
		var err error
		certFile, keyFile, cert, r.CA, err = selfSignedCert(dir)
		if err != nil {
			t.Fatalf("registry certificate: %v", err)
		}
		r.CAFile = certFile
	}
	var auth string
	switch opts.Auth {
	case RegistryNoAuth:
	case RegistryBasic:
		hash, err := bcrypt.GenerateFromPassword([]byte(opts.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(opts.User+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: photon-test\n    path: %s\n", htpasswd)
	case RegistryToken:
		ts, err := r.startTokenService(cert)
		if err != nil {
			t.Fatalf("token service: %v", err)
		}
		t.Cleanup(ts.Close)
		auth = fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
			r.TokenURL, tokenService, tokenIssuer, certFile)
	default:
		t.Fatalf("registry auth %q: want %q, %q or %q", opts.Auth, RegistryNoAuth, RegistryBasic, RegistryToken)
	}

	var out bytes.Buffer
	var cmd *exec.Cmd
	for try := 0; ; try++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		r.Host = fmt.Sprintf("127.0.0.1:%d", port)
		tlsConf := ""
		if opts.TLS {
			tlsConf = fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile)
		}
		config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: photon-test-secret
%s%s`, filepath.Join(dir, "storage"), r.Host, tlsConf, auth)
		configFile := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		out.Reset()
		cmd = exec.Command(RegistryBinary, "serve", configFile)
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", RegistryBinary, err)
		}
		err = r.waitReady(cmd, 10*time.Second)
		if err == nil {
			break
		}
		cmd.Process.Kill()
		cmd.Wait()
		if try == 2 || !strings.Contains(out.String(), "address already in use") {
			t.Fatalf("docker-registry on %s: %v\n%s", r.Host, err, out.String())
		}
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("docker-registry output:\n%s", out.String())
		}
	})
	return r
}

// ClosedPort returns "127.0.0.1:PORT" for a port nothing listens on.
func ClosedPort(t testing.TB) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// freePort returns a port of 127.0.0.1 free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls /v2/ until the registry answers.
func (r *Registry) waitReady(cmd *exec.Cmd, timeout time.Duration) error {
	exited := make(chan error, 1)
	go func() { _, err := cmd.Process.Wait(); exited <- err }()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.CA}}}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
	}
	return fmt.Errorf("no answer on %s within %s", r.Host, timeout)
}

// URL is the registry's base URL.
func (r *Registry) URL() string {
	if r.opts.TLS {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// Push copies the image src (a skopeo transport:reference, such as
// "oci:DIR:TAG") to NAME:TAG in the registry with skopeo; all copies every
// image of an index, format ("", "oci" or "v2s2") chooses the manifest
// type. It returns the digest of the manifest written.
func (r *Registry) Push(t testing.TB, src, dest string, all bool, format string) string {
	t.Helper()
	digestFile := filepath.Join(t.TempDir(), "digest")
	args := []string{"--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", "--digestfile", digestFile}
	if r.opts.Auth != RegistryNoAuth {
		args = append(args, "--dest-creds", r.User+":"+r.Password)
	}
	if all {
		args = append(args, "--all")
	}
	if format != "" {
		args = append(args, "--format", format)
	}
	args = append(args, src, "docker://"+r.Host+"/"+dest)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "skopeo", args...).CombinedOutput(); err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	d, err := os.ReadFile(digestFile)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(d))
}

// AuthFile writes a config.json-style credentials file for the registry
// with one entry (key → entry) and returns its path.
func AuthFile(t testing.TB, auths map[string]map[string]string) string {
	t.Helper()
	data, err := json.MarshalIndent(map[string]any{"auths": auths}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// BasicAuth is the "auth" value of config.json: base64 of "user:password".
func BasicAuth(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

// selfSignedCert makes an ECDSA certificate for 127.0.0.1, ::1 and
// localhost that is its own CA, in dir.
func selfSignedCert(dir string) (certFile, keyFile string, cert tls.Certificate, pool *x509.CertPool, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "photon-init test registry"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err = os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return
	}
	if err = os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return
	}
	if cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return
}

// The token service's names, which the registry's configuration repeats.
const (
	tokenService = "photon-test-registry"
	tokenIssuer  = "photon-test-token-issuer"
)

// startTokenService serves Docker's token protocol over HTTPS on
// localhost (go-containerregistry refuses a realm on a loopback IP other
// than the registry's own host:port): GET with Basic credentials, or POST
// with an OAuth2 refresh_token or password grant. Tokens are ES256 JWTs
// with the signing certificate in x5c, which the registry trusts through
// its rootcertbundle. Unknown or missing credentials get a token granting
// nothing, as Docker Hub does for anonymous clients.
func (r *Registry) startTokenService(cert tls.Certificate) (*httptest.Server, error) {
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("token signing key is %T, want ECDSA", cert.PrivateKey)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/token" {
			http.NotFound(w, req)
			return
		}
		if err := req.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		user, pass, basic := req.BasicAuth()
		switch {
		case basic && (user != r.opts.User || pass != r.opts.Password):
			http.Error(w, `{"details":"wrong user name or password"}`, http.StatusUnauthorized)
			return
		case req.Method == http.MethodPost && req.PostForm.Get("grant_type") == "refresh_token":
			if r.opts.RefreshToken == "" || req.PostForm.Get("refresh_token") != r.opts.RefreshToken {
				http.Error(w, `{"details":"invalid refresh token"}`, http.StatusUnauthorized)
				return
			}
			user, basic = r.opts.User, true
		case req.Method == http.MethodPost && req.PostForm.Get("grant_type") == "password":
			if req.PostForm.Get("username") != r.opts.User || req.PostForm.Get("password") != r.opts.Password {
				http.Error(w, `{"details":"wrong user name or password"}`, http.StatusUnauthorized)
				return
			}
			user, basic = r.opts.User, true
		}
		var access []map[string]any
		if basic {
			for _, scope := range req.Form["scope"] {
				for _, s := range strings.Fields(scope) {
					parts := strings.Split(s, ":")
					if len(parts) == 3 {
						access = append(access, map[string]any{"type": parts[0], "name": parts[1], "actions": strings.Split(parts[2], ",")})
					}
				}
			}
		}
		token, err := signToken(key, cert.Certificate[0], user, access)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		r.TokensIssued.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"token": token, "access_token": token, "expires_in": 300,
			"issued_at": time.Now().UTC().Format(time.RFC3339),
		})
	}))
	ts.Listener.Close()
	ts.Listener = l
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.StartTLS()
	r.TokenURL = (&url.URL{Scheme: "https", Host: fmt.Sprintf("localhost:%d", l.Addr().(*net.TCPAddr).Port), Path: "/token"}).String()
	return ts, nil
}

// signToken makes the registry's bearer token: a JWT signed with ES256.
func signToken(key *ecdsa.PrivateKey, certDER []byte, subject string, access []map[string]any) (string, error) {
	now := time.Now()
	jti := make([]byte, 8)
	rand.Read(jti)
	header, err := json.Marshal(map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(certDER)}})
	if err != nil {
		return "", err
	}
	if access == nil {
		access = []map[string]any{}
	}
	claims, err := json.Marshal(map[string]any{
		"iss": tokenIssuer, "sub": subject, "aud": tokenService,
		"exp": now.Add(5 * time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
		"jti": hex.EncodeToString(jti), "access": access,
	})
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signed))
	rs, ss, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	rs.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return signed + "." + enc.EncodeToString(sig), nil
}

// Tags of the layout MultiArchLayout writes: the image index, and the
// other architecture's image alone.
const (
	MultiArchTag = "multiarch"
	OtherArchTag = "otherarch"
)

// MultiArchLayout writes, in a new OCI layout in a temporary directory, an
// image index tagged MultiArchTag that lists the base image (im's Tag) for
// linux/goarch and, first, the same layers with a config for
// linux/otherArch, which is also tagged OtherArchTag. It returns the layout's directory and the digests of
// the index, the native manifest and the other one.
func MultiArchLayout(t testing.TB, im *Images, goarch, otherArch string) (dir, index, native, other string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "multiarch")
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(im.OCILayout, "blobs", "sha256")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Link(filepath.Join(src, e.Name()), filepath.Join(blobs, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	readJSON := func(p string, v any) {
		t.Helper()
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	writeBlob := func(v any) (string, int64) {
		t.Helper()
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if err := os.WriteFile(filepath.Join(blobs, hex.EncodeToString(sum[:])), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return "sha256:" + hex.EncodeToString(sum[:]), int64(len(data))
	}
	blobPath := func(d string) string { return filepath.Join(blobs, strings.TrimPrefix(d, "sha256:")) }

	var idx struct {
		Manifests []map[string]any `json:"manifests"`
	}
	readJSON(filepath.Join(im.OCILayout, "index.json"), &idx)
	var base map[string]any
	for _, m := range idx.Manifests {
		if ann, _ := m["annotations"].(map[string]any); ann["org.opencontainers.image.ref.name"] == Tag {
			base = m
		}
	}
	if base == nil {
		t.Fatalf("no %q image in %s", Tag, im.OCILayout)
	}
	native = base["digest"].(string)
	var manifest map[string]any
	readJSON(blobPath(native), &manifest)
	configDesc := manifest["config"].(map[string]any)
	var config map[string]any
	readJSON(blobPath(configDesc["digest"].(string)), &config)

	config["architecture"] = otherArch
	cd, cs := writeBlob(config)
	manifest["config"] = map[string]any{"mediaType": configDesc["mediaType"], "digest": cd, "size": cs}
	other, os2 := writeBlob(manifest)
	platform := func(arch string) map[string]string { return map[string]string{"os": "linux", "architecture": arch} }
	index, is := writeBlob(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []map[string]any{
			{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": other, "size": os2, "platform": platform(otherArch)},
			{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": native, "size": base["size"], "platform": platform(goarch)},
		},
	})
	top, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []map[string]any{{
			"mediaType": "application/vnd.oci.image.index.v1+json", "digest": index, "size": is,
			"annotations": map[string]string{"org.opencontainers.image.ref.name": MultiArchTag},
		}, {
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": other, "size": os2,
			"annotations": map[string]string{"org.opencontainers.image.ref.name": OtherArchTag},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), top, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, index, native, other
}
