package registry

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseAuthFile(t *testing.T) {
	tests := []struct {
		name string
		json string
		want credentials
		err  string
	}{
		{name: "empty", json: `{}`, want: credentials{}},
		{name: "auth and hub aliases", json: `{"auths": {
			"https://index.docker.io/v1/": {"auth": "` + b64("hub:pw") + `"},
			"registry.example.com:5000": {"auth": "` + b64("u:p:with:colons") + `"}}}`,
			want: credentials{
				"index.docker.io":           {Username: "hub", Password: "pw"},
				"registry.example.com:5000": {Username: "u", Password: "p:with:colons"},
			}},
		{name: "username password and tokens", json: `{"auths": {
			"http://Reg.Example.com/": {"username": "u", "password": "p"},
			"ghcr.io": {"identitytoken": "refresh"},
			"quay.io": {"registrytoken": "bearer"}},
			"credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud"}}`,
			want: credentials{
				"reg.example.com": {Username: "u", Password: "p"},
				"ghcr.io":         {IdentityToken: "refresh"},
				"quay.io":         {RegistryToken: "bearer"},
			}},
		{name: "entry left to a helper", json: `{"auths": {"gcr.io": {}}}`, want: credentials{}},
		{name: "bad base64", json: `{"auths": {"r": {"auth": "***"}}}`, err: `auths["r"].auth: not base64`},
		{name: "no colon", json: `{"auths": {"r": {"auth": "` + b64("user") + `"}}}`, err: `not base64 of "user:password"`},
		{name: "same host twice", json: `{"auths": {"docker.io": {"auth": "` + b64("a:b") + `"}, "index.docker.io": {"auth": "` + b64("c:d") + `"}}}`, err: "a second time"},
		{name: "empty key", json: `{"auths": {"": {"auth": "` + b64("a:b") + `"}}}`, err: `"" is not a registry`},
		{name: "syntax error", json: "{\n  \"auths\": {\n    \"r\": }\n}", err: "line 3: invalid character"},
		{name: "wrong type", json: `{"auths": []}`, err: "cannot unmarshal array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAuthFile([]byte(tt.json))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s: got %+v, want %+v", k, got[k], v)
				}
			}
		})
	}
}

func TestReadAuthFile(t *testing.T) {
	dir := t.TempDir()
	if c, err := readAuthFile(filepath.Join(dir, "missing.json")); err != nil || len(c) != 0 {
		t.Errorf("missing file: %v, %v; want no credentials and no error", c, err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readAuthFile(bad); err == nil || !strings.Contains(err.Error(), "registry credentials "+bad+": ") {
		t.Errorf("bad file: %v, want an error naming it", err)
	}
}

func TestKeychain(t *testing.T) {
	creds := credentials{"index.docker.io": {Username: "hub", Password: "pw"}, "r.example:5000": {IdentityToken: "tok"}}
	for _, tt := range []struct {
		ref  string
		want authn.AuthConfig
	}{
		{"alpine:3", authn.AuthConfig{Username: "hub", Password: "pw"}},
		{"docker.io/library/alpine:3", authn.AuthConfig{Username: "hub", Password: "pw"}},
		{"r.example:5000/app:1", authn.AuthConfig{IdentityToken: "tok"}},
		{"r.example/app:1", authn.AuthConfig{}},
	} {
		ref, err := name.ParseReference(tt.ref)
		if err != nil {
			t.Fatal(err)
		}
		a, err := creds.Resolve(ref.Context())
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		if *got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.ref, *got, tt.want)
		}
	}
}

func TestInsecure(t *testing.T) {
	ih, err := parseInsecure([]string{"127.0.0.1:5000", "Reg.Local", "[::1]:5001", "[fe80::1]"})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true,
		"127.0.0.1:5001": false,
		"127.0.0.1":      false,
		"reg.local":      true,
		"REG.LOCAL:443":  true,
		"[::1]:5001":     true,
		"[::1]:5000":     false,
		"[fe80::1]:80":   true,
		"fe80::1":        true,
		"other.local":    false,
	} {
		if got := ih.allows(host); got != want {
			t.Errorf("allows(%q) = %v, want %v", host, got, want)
		}
	}
	for _, bad := range []string{"http://x", "x/y", "x:0", "x:port", ":5000", "", "a b"} {
		if _, err := parseInsecure([]string{bad}); err == nil {
			t.Errorf("parseInsecure(%q) accepted it", bad)
		}
	}
}

// roundTripFunc is an http.RoundTripper from a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestHTTPSOnly(t *testing.T) {
	ih, err := parseInsecure([]string{"insecure.local"})
	if err != nil {
		t.Fatal(err)
	}
	var passed []string
	rt := httpsOnly{insecure: ih, next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		passed = append(passed, r.URL.String())
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})}
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"https://secure.example/v2/", true},
		{"http://secure.example/v2/", false},
		{"http://insecure.local:5000/v2/", true},
		{"http://127.0.0.1:5000/v2/", false},
	} {
		req, err := http.NewRequest(http.MethodGet, tt.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = rt.RoundTrip(req)
		if (err == nil) != tt.ok {
			t.Errorf("%s: error %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
	if len(passed) != 2 {
		t.Errorf("requests passed on: %v, want the two allowed", passed)
	}
}

func TestRemoteRef(t *testing.T) {
	for _, tt := range []struct {
		ref, insecure string
		want, scheme  string
	}{
		{"alpine", "", "index.docker.io/library/alpine:latest", "https"},
		{"x:tag", "", "index.docker.io/library/x:tag", "https"},
		{"docker.io/library/x:tag", "", "index.docker.io/library/x:tag", "https"},
		{"docker://user/app:2", "", "index.docker.io/user/app:2", "https"},
		{"reg.example:5000/app:1.0", "reg.example:5000", "reg.example:5000/app:1.0", "http"},
		{"reg.example:5000/team/app@sha256:" + strings.Repeat("a", 64), "reg.example", "reg.example:5000/team/app@sha256:" + strings.Repeat("a", 64), "http"},
		{"app:1@sha256:" + strings.Repeat("b", 64), "", "index.docker.io/library/app@sha256:" + strings.Repeat("b", 64), "https"},
		{"localhost:5000/app:1", "", "localhost:5000/app:1", "http"}, // go-containerregistry tries HTTP after HTTPS here; httpsOnly refuses it
		{"Mirror/app:1", "", "Mirror/app:1", "https"},                // a component with capitals is a registry to Docker
	} {
		insecure := []string{}
		if tt.insecure != "" {
			insecure = append(insecure, tt.insecure)
		}
		src, err := New(tt.ref, Options{Insecure: insecure})
		if err != nil {
			t.Fatalf("%s: %v", tt.ref, err)
		}
		_, ref, err := src.(*source).remoteRef()
		if err != nil {
			t.Fatalf("%s: %v", tt.ref, err)
		}
		if ref.Name() != tt.want || ref.Context().Scheme() != tt.scheme {
			t.Errorf("%s: %s over %s, want %s over %s", tt.ref, ref.Name(), ref.Context().Scheme(), tt.want, tt.scheme)
		}
	}
}
