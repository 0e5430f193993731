package image

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// SourceFunc makes the Source for a parsed reference. The store calls the
// one registered for the reference's transport (see WithSource).
type SourceFunc func(ctx context.Context, ref Reference, p Platform) (Source, error)

// openFiles opens the layout directory or archive a local reference names.
func openFiles(ref Reference) (fileSet, error) {
	fi, err := os.Stat(ref.Path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		if ref.Transport != TransportOCI {
			return nil, fmt.Errorf("%s is a directory; %s: needs an archive file (oci: reads a layout directory)", ref.Path, ref.Transport)
		}
		return dirFiles(ref.Path), nil
	}
	if ref.Transport == TransportOCI {
		return nil, fmt.Errorf("%s is not a directory (oci-archive: reads a layout in a tar file)", ref.Path)
	}
	return indexTar(ref.Path)
}

// OCILayoutSource returns the Source of an oci: or oci-archive: reference:
// the image in the layout's index.json whose
// org.opencontainers.image.ref.name annotation is ref.Tag (or the only
// image when ref.Tag is ""), for platform p when that is an index.
func OCILayoutSource(_ context.Context, ref Reference, p Platform) (Source, error) {
	return &ociLayout{ref: ref, platform: p}, nil
}

type ociLayout struct {
	ref      Reference
	platform Platform
}

func (o *ociLayout) Resolve(ctx context.Context) (*Resolved, error) {
	files, err := openFiles(o.ref)
	if err != nil {
		return nil, err
	}
	if data, err := readSmall(files, ocispec.ImageLayoutFile); err != nil {
		return nil, fmt.Errorf("%s: not an OCI image layout: %w", files, err)
	} else {
		var l ocispec.ImageLayout
		if err := json.Unmarshal(data, &l); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", files, ocispec.ImageLayoutFile, err)
		}
		if l.Version != ocispec.ImageLayoutVersion {
			return nil, fmt.Errorf("%s: image layout version %q, want %q", files, l.Version, ocispec.ImageLayoutVersion)
		}
	}
	data, err := readSmall(files, ocispec.ImageIndexFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", files, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", files, ocispec.ImageIndexFile, err)
	}
	desc, err := pickTagged(idx.Manifests, o.ref.Tag, o.platform)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", files, err)
	}
	res, err := ResolveDescriptor(ctx, layoutOpener(files), desc, o.platform)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", files, err)
	}
	return res, nil
}

// layoutOpener opens blobs at blobs/ALG/HEX.
func layoutOpener(files fileSet) BlobOpener {
	return func(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("blob %q: %w", d.Digest, err)
		}
		rc, err := files.open(path.Join(ocispec.ImageBlobsDir, d.Digest.Algorithm().String(), d.Digest.Encoded()))
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w", d.Digest, err)
		}
		return rc, nil
	}
}

// pickTagged chooses the index entry tagged tag ("" for the only one);
// several with that tag are platform variants.
func pickTagged(manifests []ocispec.Descriptor, tag string, p Platform) (ocispec.Descriptor, error) {
	var tags []string
	var matches []ocispec.Descriptor
	for _, d := range manifests {
		name := d.Annotations[ocispec.AnnotationRefName]
		if name != "" && !slices.Contains(tags, name) {
			tags = append(tags, name)
		}
		if tag == "" || name == tag || d.Annotations["io.containerd.image.name"] == tag {
			matches = append(matches, d)
		}
	}
	have := "it has no tags"
	if len(tags) > 0 {
		have = "tags: " + strings.Join(tags, ", ")
	}
	switch {
	case len(matches) == 1:
		return matches[0], nil
	case len(matches) == 0 && tag == "":
		return ocispec.Descriptor{}, errors.New("the index lists no image")
	case len(matches) == 0:
		return ocispec.Descriptor{}, fmt.Errorf("no image tagged %q (%s)", tag, have)
	}
	for _, d := range matches {
		if d.Platform == nil {
			return ocispec.Descriptor{}, fmt.Errorf("several images and no tag chosen (%s)", have)
		}
	}
	return SelectManifest(matches, p)
}

// DockerArchiveSource returns the Source of a docker-archive: reference: a
// "docker save" archive (manifest.json with a config and layer files,
// either the legacy ID/layer.tar layout or the OCI-layout form of Docker 25
// and later), the image named ref.Tag ("name:tag" or "@N"), or the only
// one. Its digest is the config's digest (Docker's image ID), as such an
// archive has no manifest digest.
func DockerArchiveSource(_ context.Context, ref Reference, _ Platform) (Source, error) {
	return &dockerArchive{ref: ref}, nil
}

type dockerArchive struct {
	ref Reference
}

// dockerManifest is one entry of a docker-save archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func (d *dockerArchive) Resolve(ctx context.Context) (*Resolved, error) {
	files, err := openFiles(d.ref)
	if err != nil {
		return nil, err
	}
	data, err := readSmall(files, "manifest.json")
	if err != nil {
		return nil, fmt.Errorf("%s: not a docker-save archive: %w", files, err)
	}
	var ms []dockerManifest
	if err := json.Unmarshal(data, &ms); err != nil {
		return nil, fmt.Errorf("%s: manifest.json: %w", files, err)
	}
	m, err := pickDockerManifest(ms, d.ref.Tag)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", files, err)
	}
	cdata, err := readSmall(files, m.Config)
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", files, err)
	}
	cdig := digest.SHA256.FromBytes(cdata)
	if want, ok := blobDigest(m.Config); ok && want != cdig {
		return nil, fmt.Errorf("%s: config %s has digest %s", files, m.Config, cdig)
	}
	cf, err := ParseConfigFile(cdata)
	if err != nil {
		return nil, fmt.Errorf("%s: config %s: %w", files, m.Config, err)
	}
	if len(cf.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("%s: %d layers but the config lists %d diff_ids", files, len(m.Layers), len(cf.DiffIDs))
	}
	res := &Resolved{Digest: cdig.String(), Config: cf.Config}
	for i, name := range m.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l, err := dockerLayer(files, name, cf.DiffIDs[i])
		if err != nil {
			return nil, fmt.Errorf("%s: layer %s: %w", files, name, err)
		}
		res.Layers = append(res.Layers, l)
	}
	return res, nil
}

// pickDockerManifest chooses the archive's image by name:tag, "@N" or, for
// "", the only one.
func pickDockerManifest(ms []dockerManifest, tag string) (dockerManifest, error) {
	if len(ms) == 0 {
		return dockerManifest{}, errors.New("manifest.json lists no image")
	}
	if n, ok := strings.CutPrefix(tag, "@"); ok {
		i, err := strconv.Atoi(n)
		if err != nil || i < 0 || i >= len(ms) {
			return dockerManifest{}, fmt.Errorf("no image %s: the archive has %d (@0..@%d)", tag, len(ms), len(ms)-1)
		}
		return ms[i], nil
	}
	var all []string
	for _, m := range ms {
		for _, t := range m.RepoTags {
			all = append(all, t)
			if tag == "" {
				continue
			}
			if named, err := ParseNamed(t); err == nil && named.String() == tag {
				return m, nil
			}
		}
	}
	if tag == "" {
		if len(ms) == 1 {
			return ms[0], nil
		}
		return dockerManifest{}, fmt.Errorf("%d images and none chosen: add :NAME:TAG or :@N (names: %s)", len(ms), strings.Join(all, ", "))
	}
	return dockerManifest{}, fmt.Errorf("no image named %q (names: %s)", tag, strings.Join(all, ", "))
}

// blobDigest returns the digest a "blobs/ALG/HEX" name states.
func blobDigest(name string) (digest.Digest, bool) {
	parts := strings.Split(path.Clean(name), "/")
	if len(parts) != 3 || parts[0] != ocispec.ImageBlobsDir {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2])
	return d, d.Validate() == nil
}

// dockerLayer describes one layer file of a docker-save archive. Its blob
// digest is the one in its name (blobs/sha256/HEX), else the DiffID when
// the file is an uncompressed tar, else computed by reading it once.
func dockerLayer(files fileSet, name, diffID string) (Layer, error) {
	open := func(context.Context) (io.ReadCloser, error) { return files.open(name) }
	l := Layer{DiffID: diffID, Size: -1, Open: open}
	if d, ok := blobDigest(name); ok {
		l.Digest = d.String()
		return l, nil
	}
	rc, err := files.open(name)
	if err != nil {
		return l, err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 1<<16)
	magic, _ := br.Peek(6)
	if detectCompression(magic) == compressionNone && diffID != "" {
		l.Digest = diffID
		return l, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, br); err != nil {
		return l, fmt.Errorf("read: %w", err)
	}
	l.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return l, nil
}
