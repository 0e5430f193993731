package registry

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// DefaultAuthFile is where registry credentials are read from when
// Options.AuthFile is empty.
const DefaultAuthFile = "/etc/photon/auth.json"

// dockerHub is the name go-containerregistry gives Docker Hub's registry;
// dockerHubAliases are the other names config.json files use for it.
const dockerHub = "index.docker.io"

var dockerHubAliases = []string{"docker.io", "registry-1.docker.io", "index.docker.io"}

// authFile is the part of Docker's config.json photon-init reads.
type authFile struct {
	Auths map[string]authEntry `json:"auths"`
}

// authEntry is one registry's credentials in config.json.
type authEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// credentials maps a registry host ("host:port", Docker Hub as
// index.docker.io) to its credentials.
type credentials map[string]authn.AuthConfig

// readAuthFile reads a config.json-style credentials file. A file that
// does not exist means no credentials.
func readAuthFile(path string) (credentials, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return credentials{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry credentials: %w", err)
	}
	creds, err := parseAuthFile(data)
	if err != nil {
		return nil, fmt.Errorf("registry credentials %s: %w", path, err)
	}
	return creds, nil
}

// parseAuthFile decodes a config.json-style credentials file.
func parseAuthFile(data []byte) (credentials, error) {
	var f authFile
	if err := json.Unmarshal(data, &f); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) && se.Offset <= int64(len(data)) {
			return nil, fmt.Errorf("line %d: %w", 1+bytes.Count(data[:se.Offset], []byte("\n")), err)
		}
		return nil, err
	}
	creds := credentials{}
	for key, e := range f.Auths {
		host := authHost(key)
		if host == "" {
			return nil, fmt.Errorf("auths: %q is not a registry", key)
		}
		cfg := authn.AuthConfig{
			Username:      e.Username,
			Password:      e.Password,
			IdentityToken: e.IdentityToken,
			RegistryToken: e.RegistryToken,
		}
		if e.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(e.Auth))
			if err != nil {
				return nil, fmt.Errorf("auths[%q].auth: not base64: %w", key, err)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("auths[%q].auth: not base64 of \"user:password\"", key)
			}
			cfg.Username, cfg.Password = user, pass
		}
		if cfg == (authn.AuthConfig{}) {
			continue // an entry a credential helper fills; none here
		}
		if _, dup := creds[host]; dup {
			return nil, fmt.Errorf("auths: %q gives credentials for %s a second time", key, host)
		}
		creds[host] = cfg
	}
	return creds, nil
}

// authHost turns an "auths" key into the registry host it names:
// "https://index.docker.io/v1/" is index.docker.io, "HOST:5000/" is
// host:5000.
func authHost(key string) string {
	h := strings.TrimSpace(key)
	if i := strings.Index(h, "://"); i >= 0 {
		h = h[i+3:]
	}
	h, _, _ = strings.Cut(h, "/")
	h = strings.ToLower(h)
	for _, alias := range dockerHubAliases {
		if h == alias {
			return dockerHub
		}
	}
	return h
}

// Resolve implements authn.Keychain: the credentials for the resource's
// registry, or anonymous access.
func (c credentials) Resolve(r authn.Resource) (authn.Authenticator, error) {
	cfg, ok := c[authHost(r.RegistryStr())]
	if !ok {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(cfg), nil
}
