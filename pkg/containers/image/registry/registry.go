package registry

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/photon-init/photon-init/pkg/containers/image"
)

// Defaults of Options.
const (
	// DefaultTimeout bounds resolving a reference: its manifests and
	// config.
	DefaultTimeout = 2 * time.Minute
	// DefaultStallTimeout ends a layer download that receives nothing
	// for this long.
	DefaultStallTimeout = time.Minute
)

// userAgent is sent with every request.
const userAgent = "photon-init"

// Options configures pulls from registries.
type Options struct {
	// Insecure lists the registries reached over plain HTTP: "host"
	// (any port) or "host:port". Every other registry is reached over
	// HTTPS only.
	Insecure []string
	// AuthFile holds the credentials, in Docker's config.json format;
	// "" means DefaultAuthFile. A missing file means anonymous pulls.
	AuthFile string
	// CACerts are PEM certificates of authorities trusted for HTTPS in
	// addition to the system's (a registry with a private CA or a
	// self-signed certificate).
	CACerts []byte
	// Platform is the one chosen from multi-platform images; the zero
	// value means image.DefaultPlatform(). NewSource's sources take the
	// store's platform instead.
	Platform image.Platform
	// Timeout bounds resolving a reference (0: DefaultTimeout).
	Timeout time.Duration
	// StallTimeout ends a layer download receiving nothing for this long
	// (0: DefaultStallTimeout).
	StallTimeout time.Duration
}

// puller is what the sources made from one Options share: the settings
// and the HTTP transport with its connections.
type puller struct {
	authFile  string
	insecure  insecureHosts
	transport http.RoundTripper
	timeout   time.Duration
	stall     time.Duration
}

func newPuller(opts Options) (*puller, error) {
	insecure, err := parseInsecure(opts.Insecure)
	if err != nil {
		return nil, err
	}
	var roots *x509.CertPool // nil: the system's
	if len(opts.CACerts) > 0 {
		if roots, err = x509.SystemCertPool(); err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(opts.CACerts) {
			return nil, errors.New("registry CA certificates: no PEM certificate found")
		}
	}
	p := &puller{
		authFile:  opts.AuthFile,
		insecure:  insecure,
		transport: newTransport(roots, insecure),
		timeout:   opts.Timeout,
		stall:     opts.StallTimeout,
	}
	if p.authFile == "" {
		p.authFile = DefaultAuthFile
	}
	if p.timeout <= 0 {
		p.timeout = DefaultTimeout
	}
	if p.stall <= 0 {
		p.stall = DefaultStallTimeout
	}
	return p, nil
}

// New returns the source of the registry image ref ("host:5000/app:1.0",
// "x:tag", "x@sha256:...", optionally written with a "docker://" prefix).
func New(ref string, opts Options) (image.Source, error) {
	p, err := newPuller(opts)
	if err != nil {
		return nil, err
	}
	r, err := image.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if r.Transport != image.TransportRegistry {
		return nil, fmt.Errorf("image reference %q: not a registry reference (it is %s:)", ref, r.Transport)
	}
	platform := opts.Platform
	if platform == (image.Platform{}) {
		platform = image.DefaultPlatform()
	}
	return &source{puller: p, raw: ref, named: r.Named, platform: platform}, nil
}

// NewSource returns the image.SourceFunc of registry references for the
// store (image.WithSource(image.TransportRegistry, fn)). Its sources share
// one HTTP transport, so connections are reused across images, and choose
// from multi-platform images the store's platform.
func NewSource(opts Options) (image.SourceFunc, error) {
	p, err := newPuller(opts)
	if err != nil {
		return nil, err
	}
	return func(_ context.Context, r image.Reference, platform image.Platform) (image.Source, error) {
		if r.Transport != image.TransportRegistry || r.Named == nil {
			return nil, fmt.Errorf("image reference %q: not a registry reference", r.Raw)
		}
		return &source{puller: p, raw: r.Raw, named: r.Named, platform: platform}, nil
	}, nil
}

// source is one registry reference.
type source struct {
	*puller
	raw      string       // as written, for messages
	named    *image.Named // normalised, with a tag or a digest
	platform image.Platform
}

// Resolve fetches the manifest (the platform's, from an index) and the
// config. The layers are fetched when opened.
func (s *source) Resolve(ctx context.Context) (*image.Resolved, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := s.resolve(ctx)
	if err != nil {
		return nil, s.wrap(err)
	}
	return res, nil
}

func (s *source) resolve(ctx context.Context) (*image.Resolved, error) {
	creds, err := readAuthFile(s.authFile)
	if err != nil {
		return nil, err
	}
	repo, ref, err := s.remoteRef()
	if err != nil {
		return nil, err
	}
	p, err := remote.NewPuller(remote.WithTransport(s.transport), remote.WithAuthFromKeychain(creds), remote.WithUserAgent(userAgent))
	if err != nil {
		return nil, err
	}
	desc, err := p.Get(ctx, ref)
	if err != nil {
		return nil, registryError(err, repo.RegistryStr())
	}
	root := ocispec.Descriptor{
		MediaType: manifestMediaType(string(desc.MediaType)),
		Digest:    digest.Digest(desc.Digest.String()),
		Size:      desc.Size,
	}
	res, err := image.ResolveDescriptor(ctx, s.opener(p, repo, root, desc.Manifest), root, s.platform)
	if err != nil {
		return nil, err
	}
	for i := range res.Layers {
		l := &res.Layers[i]
		open, d := l.Open, l.Digest
		l.Open = func(ctx context.Context) (io.ReadCloser, error) {
			rc, err := open(ctx)
			if err != nil {
				return nil, s.wrap(fmt.Errorf("layer %s: %w", d, err))
			}
			return rc, nil
		}
	}
	return res, nil
}

// remoteRef is the reference in go-containerregistry's terms. The registry
// and the path are taken apart as distribution/reference (Docker) does, not
// parsed again; a registry listed as insecure may be reached over HTTP.
func (s *source) remoteRef() (name.Repository, name.Reference, error) {
	domain := s.named.Domain
	var opts []name.Option
	if s.insecure.allows(domain) {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(domain, opts...)
	if err != nil {
		return name.Repository{}, nil, err
	}
	repo := reg.Repo(s.named.Path)
	switch {
	case s.named.Digest != "":
		return repo, repo.Digest(s.named.Digest.String()), nil
	case s.named.Tag != "":
		return repo, repo.Tag(s.named.Tag), nil
	}
	return repo, repo.Tag("latest"), nil
}

// opener fetches the manifests and blobs of repo: root's bytes are those
// already fetched, other manifests come from /v2/NAME/manifests/DIGEST
// (checked against the digest), configs and layers from
// /v2/NAME/blobs/DIGEST behind a stall guard.
func (s *source) opener(p *remote.Puller, repo name.Repository, root ocispec.Descriptor, rootBytes []byte) image.BlobOpener {
	return func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
		if d.Digest == root.Digest {
			return io.NopCloser(bytes.NewReader(rootBytes)), nil
		}
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("digest %q: %w", d.Digest, err)
		}
		if isManifest(d.MediaType) {
			m, err := p.Get(ctx, repo.Digest(d.Digest.String()))
			if err != nil {
				return nil, registryError(err, repo.RegistryStr())
			}
			return io.NopCloser(bytes.NewReader(m.Manifest)), nil
		}
		ctx, wrap, stop := withStallGuard(ctx, s.stall)
		l, err := p.Layer(ctx, repo.Digest(d.Digest.String()))
		if err != nil {
			stop()
			return nil, registryError(err, repo.RegistryStr())
		}
		rc, err := l.Compressed()
		if err != nil {
			stop()
			if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
				return nil, cause
			}
			return nil, registryError(err, repo.RegistryStr())
		}
		return wrap(rc), nil
	}
}

// wrap names the reference in an error, with a hint at the credentials for
// "unauthorized" answers.
func (s *source) wrap(err error) error {
	var he *HTTPError
	if errors.As(err, &he) && (he.StatusCode == http.StatusUnauthorized || he.StatusCode == http.StatusForbidden) {
		host := s.named.Domain
		return fmt.Errorf("pull %s: %w (credentials for %s are read from %s)", s.raw, err, authHost(host), s.authFile)
	}
	return fmt.Errorf("pull %s: %w", s.raw, err)
}

// manifestTypes are the manifest and index media types photon-init reads.
var manifestTypes = []string{
	ocispec.MediaTypeImageManifest,
	ocispec.MediaTypeImageIndex,
	image.MediaTypeDockerManifest,
	image.MediaTypeDockerManifestList,
}

// isManifest reports whether a descriptor's media type is a manifest's or
// an index's (fetched from manifests/, not blobs/).
func isManifest(mediaType string) bool {
	for _, mt := range manifestTypes {
		if mediaType == mt {
			return true
		}
	}
	return false
}

// manifestMediaType cleans a manifest response's Content-Type: parameters
// dropped, and generic JSON types (some registries answer
// application/json) made "" so that the manifest's own mediaType decides.
func manifestMediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	switch mt {
	case "application/json", "text/plain", "application/octet-stream":
		return ""
	}
	return mt
}

// HTTPError is a registry's error answer: the HTTP status and the
// registry's messages ("manifest unknown").
type HTTPError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Codes are the registry's error codes ("MANIFEST_UNKNOWN"), if it
	// gave any.
	Codes []string
	// Message is the registry's messages, or the status text.
	Message string
	// Host is the server that answered when it is not the registry
	// itself (a token service, a blob store the registry redirected to),
	// else "".
	Host string
	err  error
}

// Error returns "MESSAGE (HTTP STATUS)" or "MESSAGE (HTTP STATUS from
// HOST)".
func (e *HTTPError) Error() string {
	if e.Host != "" {
		return fmt.Sprintf("%s (HTTP %d from %s)", e.Message, e.StatusCode, e.Host)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.StatusCode)
}

// Unwrap returns go-containerregistry's error.
func (e *HTTPError) Unwrap() error { return e.err }

// registryError turns go-containerregistry's error for an error answer into
// an HTTPError; other errors (connecting, TLS, digests) are returned as
// they are. registry is the registry's host.
func registryError(err error, registry string) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return err
	}
	he := &HTTPError{StatusCode: te.StatusCode, err: err}
	if te.Request != nil && te.Request.URL != nil && te.Request.URL.Host != registry {
		he.Host = te.Request.URL.Host
	}
	var msgs []string
	for _, d := range te.Errors {
		he.Codes = append(he.Codes, string(d.Code))
		msg := d.Message
		if msg == "" {
			msg = strings.ToLower(strings.ReplaceAll(string(d.Code), "_", " "))
		}
		msgs = append(msgs, msg)
	}
	he.Message = strings.Join(msgs, "; ")
	if he.Message == "" {
		he.Message = strings.ToLower(http.StatusText(te.StatusCode))
	}
	return he
}
