package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of Docker's v2 schema 2 images, which OCI's mirror.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
)

// maxMetadataSize bounds the manifests, indexes and configs read into
// memory.
const maxMetadataSize = 8 << 20

// BlobOpener opens a blob of an image by its descriptor. Package registry
// implements one over HTTP; the OCI layout sources over blobs/ALG/HEX.
type BlobOpener func(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)

// ReadBlob reads a small blob (a manifest, an index or a config, at most
// 8 MiB) through open and checks its digest and size.
func ReadBlob(ctx context.Context, open BlobOpener, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > maxMetadataSize {
		return nil, fmt.Errorf("blob %s: %d bytes is too large for a manifest or config", desc.Digest, desc.Size)
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("blob %q: %w", desc.Digest, err)
	}
	rc, err := open(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", desc.Digest, err)
	}
	if len(data) > maxMetadataSize {
		return nil, fmt.Errorf("blob %s: larger than 8 MiB", desc.Digest)
	}
	if desc.Size >= 0 && int64(len(data)) != desc.Size && desc.Size != 0 {
		return nil, fmt.Errorf("blob %s: %d bytes, the descriptor says %d", desc.Digest, len(data), desc.Size)
	}
	if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
		return nil, fmt.Errorf("blob %s: content has digest %s", desc.Digest, got)
	}
	return data, nil
}

// manifestOrIndex is the union of an OCI/Docker manifest and index, enough
// to tell which one a blob is when the descriptor has no media type.
type manifestOrIndex struct {
	MediaType string               `json:"mediaType"`
	Config    *ocispec.Descriptor  `json:"config"`
	Layers    []ocispec.Descriptor `json:"layers"`
	Manifests []ocispec.Descriptor `json:"manifests"`
}

// ResolveDescriptor resolves desc, a manifest or an image index (Docker's
// or OCI's), to the image for platform p: for an index it picks the
// manifest with SelectManifest (nested indexes are followed), then reads
// the manifest and its config. The layers open their blobs through open;
// the store verifies them as it reads. Resolved.Digest is the manifest's
// digest.
func ResolveDescriptor(ctx context.Context, open BlobOpener, desc ocispec.Descriptor, p Platform) (*Resolved, error) {
	for depth := 0; ; depth++ {
		if depth > 4 {
			return nil, errors.New("image indexes nested too deep")
		}
		data, err := ReadBlob(ctx, open, desc)
		if err != nil {
			return nil, err
		}
		var m manifestOrIndex
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("decode manifest %s: %w", desc.Digest, err)
		}
		mt := desc.MediaType
		if mt == "" {
			mt = m.MediaType
		}
		isIndex := mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList ||
			(mt == "" && m.Manifests != nil && m.Config == nil)
		if isIndex {
			next, err := SelectManifest(m.Manifests, p)
			if err != nil {
				return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
			}
			desc = next
			continue
		}
		switch mt {
		case ocispec.MediaTypeImageManifest, MediaTypeDockerManifest, "":
		default:
			return nil, fmt.Errorf("manifest %s: unsupported media type %q", desc.Digest, mt)
		}
		if m.Config == nil {
			return nil, fmt.Errorf("manifest %s: no config", desc.Digest)
		}
		return resolveManifest(ctx, open, desc.Digest, *m.Config, m.Layers, p)
	}
}

// resolveManifest reads the config of a manifest and lists its layers.
func resolveManifest(ctx context.Context, open BlobOpener, manifest digest.Digest, config ocispec.Descriptor, layers []ocispec.Descriptor, p Platform) (*Resolved, error) {
	data, err := ReadBlob(ctx, open, config)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: config: %w", manifest, err)
	}
	cf, err := ParseConfigFile(data)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: config %s: %w", manifest, config.Digest, err)
	}
	if cf.OS != "" && cf.OS != p.OS || cf.Architecture != "" && cf.Architecture != p.Architecture {
		return nil, fmt.Errorf("manifest %s: image is for %s/%s, this machine is %s", manifest, cf.OS, cf.Architecture, p)
	}
	if len(cf.DiffIDs) != 0 && len(cf.DiffIDs) != len(layers) {
		return nil, fmt.Errorf("manifest %s: %d layers but the config lists %d diff_ids", manifest, len(layers), len(cf.DiffIDs))
	}
	res := &Resolved{Digest: manifest.String(), Config: cf.Config}
	for i, l := range layers {
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("manifest %s: layer %d: digest %q: %w", manifest, i, l.Digest, err)
		}
		if strings.Contains(l.MediaType, "encrypted") {
			return nil, fmt.Errorf("manifest %s: layer %s: encrypted layers (%s) are not supported", manifest, l.Digest, l.MediaType)
		}
		layer := Layer{Digest: l.Digest.String(), MediaType: l.MediaType, Size: l.Size}
		if len(cf.DiffIDs) != 0 {
			layer.DiffID = cf.DiffIDs[i]
		}
		desc := l
		layer.Open = func(ctx context.Context) (io.ReadCloser, error) { return open(ctx, desc) }
		res.Layers = append(res.Layers, layer)
	}
	return res, nil
}
