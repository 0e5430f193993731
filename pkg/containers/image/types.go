package image

import (
	"context"
	"io"
	"time"
)

// Config is the part of an image's configuration that photon-init honours,
// taken from an OCI/Docker image config or mapped from an appc ACI's app
// section. The runtime combines it with the manifest by Docker's rules
// (see pkg/containers/runtime).
type Config struct {
	User         string            `json:"user,omitempty"`
	Env          []string          `json:"env,omitempty"` // KEY=VALUE
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	WorkingDir   string            `json:"workingDir,omitempty"`
	ExposedPorts []string          `json:"exposedPorts,omitempty"` // "8080/tcp"
	Volumes      []string          `json:"volumes,omitempty"`      // container paths
	StopSignal   string            `json:"stopSignal,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Healthcheck  *Healthcheck      `json:"healthcheck,omitempty"`
}

// Healthcheck is an image's HEALTHCHECK (Docker's image config extension).
type Healthcheck struct {
	Test          []string      `json:"test,omitempty"`
	Interval      time.Duration `json:"interval,omitempty"`
	Timeout       time.Duration `json:"timeout,omitempty"`
	StartPeriod   time.Duration `json:"startPeriod,omitempty"`
	StartInterval time.Duration `json:"startInterval,omitempty"`
	Retries       int           `json:"retries,omitempty"`
}

// Image is an image unpacked in the store, ready to be a container's
// read-only lower layer.
type Image struct {
	// Ref is the reference it was asked for, as written in the manifest.
	Ref string `json:"ref"`
	// Digest identifies the image's content: the manifest digest for OCI,
	// Docker and registry images, the sha512 of the ACI, or a digest of the
	// directory's path for rootfs: images.
	Digest string `json:"digest"`
	// Layers are the unpacked layer directories, lowest first. Their
	// whiteouts are in overlayfs form (0/0 character devices,
	// trusted.overlay.opaque), so they stack directly as overlay lowerdirs
	// (overlay's lowerdir= option lists them highest first). A rootfs:
	// image has exactly one layer: the directory itself.
	Layers []string `json:"layers"`
	// Config is the image's configuration.
	Config Config `json:"config"`
}

// Layer is one layer blob of an image as its source offers it, before it is
// unpacked. The store verifies Digest (and DiffID when set) while it reads.
type Layer struct {
	// Digest is the digest of the blob as stored ("sha256:..."; compressed
	// for compressed layers). ACIs use "sha512:..." of the file.
	Digest string
	// DiffID is the digest of the uncompressed tar when the image config
	// lists it (rootfs.diff_ids), else "".
	DiffID string
	// MediaType names the blob's format; "" means detect the compression
	// from its first bytes (gzip, bzip2, xz, zstd or none).
	MediaType string
	// Size is the blob's size in bytes, or -1 when unknown.
	Size int64
	// PathPrefix is stripped from every entry name; entries outside it are
	// skipped (an ACI's files live under "rootfs/").
	PathPrefix string
	// Open returns the blob's bytes.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// Resolved is what a Source resolves a reference to: the image's identity,
// its config and its layers, lowest first, nothing unpacked yet.
type Resolved struct {
	Digest string
	Config Config
	Layers []Layer
}

// Source resolves one kind of image reference (an OCI layout, a docker-save
// archive, an ACI, a registry) to its config and layers.
type Source interface {
	Resolve(ctx context.Context) (*Resolved, error)
}
