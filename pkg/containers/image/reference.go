package image

import (
	"fmt"
	"strings"
)

// Transports: the kinds of image reference ParseReference tells apart. The
// written prefix of a local reference is its transport followed by ":".
const (
	// TransportOCI is an OCI image layout directory: "oci:PATH[:TAG]".
	TransportOCI = "oci"
	// TransportOCIArchive is an OCI image layout in a tar file:
	// "oci-archive:PATH[:TAG]".
	TransportOCIArchive = "oci-archive"
	// TransportDockerArchive is a "docker save" archive:
	// "docker-archive:PATH[:REF]", REF a name:tag in its manifest.json or
	// "@N" for its Nth image.
	TransportDockerArchive = "docker-archive"
	// TransportACI is an appc image: "aci:PATH" (package aci).
	TransportACI = "aci"
	// TransportRootfs is a plain root filesystem directory:
	// "rootfs:PATH".
	TransportRootfs = "rootfs"
	// TransportRegistry is every other reference: a name in a registry
	// ("host:5000/app:1.0", "docker.io/library/x:tag", "x:tag",
	// "x@sha256:..."), optionally written with a "docker://" prefix
	// (package registry).
	TransportRegistry = "registry"
)

// localTransports are the transports whose references name a file system
// path.
var localTransports = []string{TransportOCI, TransportOCIArchive, TransportDockerArchive, TransportACI, TransportRootfs}

// Reference is a parsed image reference.
type Reference struct {
	// Transport is one of the Transport constants.
	Transport string
	// Path is the file system path of a local reference.
	Path string
	// Tag selects an image inside a local reference: the
	// org.opencontainers.image.ref.name of an OCI layout, or a docker-save
	// archive's name:tag (normalised, "docker.io/library/x:1") or "@N".
	// "" means the only image there is.
	Tag string
	// Named is a registry reference, normalised ("x:tag" becomes
	// "docker.io/library/x:tag"; a reference without tag or digest gets
	// ":latest"); nil for a local reference.
	Named *Named
	// Raw is the reference as written.
	Raw string
}

// String returns the reference as written.
func (r Reference) String() string { return r.Raw }

// ParseReference parses an image reference as a manifest writes it (see
// the Transport constants). A local reference splits at its first ":"
// after the transport, so its path cannot contain ":" (as with skopeo).
func ParseReference(s string) (Reference, error) {
	ref := Reference{Raw: s}
	if s == "" {
		return ref, fmt.Errorf("image reference is empty")
	}
	for _, t := range localTransports {
		rest, ok := strings.CutPrefix(s, t+":")
		if !ok {
			continue
		}
		ref.Transport = t
		ref.Path, ref.Tag, _ = strings.Cut(rest, ":")
		if ref.Path == "" {
			return ref, fmt.Errorf("image reference %q: no path after %q", s, t+":")
		}
		switch t {
		case TransportACI, TransportRootfs:
			if ref.Tag != "" {
				return ref, fmt.Errorf("image reference %q: %s: takes a path only (a path cannot contain \":\")", s, t)
			}
		case TransportDockerArchive:
			if ref.Tag != "" && !strings.HasPrefix(ref.Tag, "@") {
				named, err := ParseNamed(ref.Tag)
				if err != nil {
					return ref, fmt.Errorf("image reference %q: image name %q: %w", s, ref.Tag, err)
				}
				if named.Digest != "" {
					return ref, fmt.Errorf("image reference %q: a docker-archive image is chosen by name:tag or @N, not by digest", s)
				}
				ref.Tag = named.String()
			}
		}
		return ref, nil
	}
	name := strings.TrimPrefix(s, "docker://")
	named, err := ParseNamed(name)
	if err != nil {
		return ref, fmt.Errorf("image reference %q: %w (local images are written oci:PATH, oci-archive:PATH, docker-archive:PATH, aci:PATH or rootfs:PATH)", s, err)
	}
	ref.Transport = TransportRegistry
	ref.Named = named
	return ref, nil
}
