// Package registry is the image source for references to images in an OCI
// distribution / Docker registry v2: "host:5000/app:1.0",
// "docker.io/library/x:tag", "x:tag" (normalised to
// docker.io/library/x:tag), "x@sha256:...".
//
// Resolving a reference fetches its manifest (an OCI or Docker v2 schema 2
// image manifest, or an image index / manifest list from which the image
// for the store's platform is chosen by image.SelectManifest) and the image
// config, through image.ResolveDescriptor, so that registry images follow
// the same rules as OCI layouts. Manifests and configs are checked against
// their digests (a digest reference's manifest against the reference).
// Layers are not fetched until the store opens them; the store verifies
// their digests as it unpacks.
//
// Transport: HTTPS by default, trusting the system's roots and
// Options.CACerts.
// Plain HTTP only to the hosts in Options.Insecure (init.yaml's
// registries.insecure): every request photon-init makes for a pull, the
// token service's and redirects' included, goes through a check that
// refuses plain HTTP to any other host, so that no address heuristic (the
// library tries HTTP for loopback and private addresses) can downgrade a
// pull. A token service on another host reached over plain HTTP must be
// listed as insecure too.
//
// Credentials come from Options.AuthFile (/etc/photon/auth.json), in the
// format of Docker's config.json: "auths" maps a registry ("host:port", or
// a URL such as "https://index.docker.io/v1/") to {"auth":
// base64("user:password")}, or {"username", "password"}, or an
// "identitytoken" (an OAuth2 refresh token) or a "registrytoken" (a bearer
// token used as it is). Credential helpers (credsStore, credHelpers) are not
// supported: a machine running photon-init has none. The file is read at
// every pull, so changing it needs no restart. The registry's challenge
// decides how they are used: Basic auth, or a bearer token from the
// WWW-Authenticate realm (Docker's token protocol, OAuth2 refresh tokens).
//
// The protocol is spoken by github.com/google/go-containerregistry
// (remote.Puller: challenge handling, token refresh, retries of temporary
// errors). It was chosen over containerd's remotes/docker resolver because
// of the static binary's size: measured on photon-init's own build, net/http
// with crypto/tls add 3.0 MB (needed by either, and by the control
// socket), go-containerregistry 0.45 MB more, containerd's resolver 2.4 MB
// more (OpenTelemetry tracing, gRPC status types and its content and
// images packages). Image references are parsed and normalised as Docker
// does, by image.ParseReference (image.Named).
//
// Timeouts: Options.Timeout bounds resolving (manifests and config);
// connecting, the TLS handshake and each response's headers have fixed
// limits; a layer download fails when no byte arrives for
// Options.StallTimeout. All of it ends when the caller's context does.
package registry
