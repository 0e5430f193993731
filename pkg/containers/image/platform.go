package image

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Platform is the OS, architecture and variant an image is chosen for from
// an image index (a multi-platform image).
type Platform struct {
	OS           string
	Architecture string
	// Variant is "v7" for arm, "v8" for arm64, "v1".."v4" for amd64
	// (the GOAMD64 level); "" means the architecture's baseline.
	Variant string
}

// String returns "os/arch[/variant]".
func (p Platform) String() string {
	if p.Variant == "" {
		return p.OS + "/" + p.Architecture
	}
	return p.OS + "/" + p.Architecture + "/" + p.Variant
}

// DefaultPlatform is the platform this binary runs on: linux,
// runtime.GOARCH, and the variant from its build settings (GOARM, GOAMD64)
// or the architecture's usual one.
func DefaultPlatform() Platform {
	p := Platform{OS: "linux", Architecture: runtime.GOARCH}
	setting := func(key string) string {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == key {
					return s.Value
				}
			}
		}
		return ""
	}
	switch p.Architecture {
	case "arm64":
		p.Variant = "v8"
	case "arm":
		p.Variant = "v7"
		if v := setting("GOARM"); v != "" {
			p.Variant = "v" + strings.SplitN(v, ",", 2)[0]
		}
	case "amd64":
		p.Variant = "v1"
		if v := setting("GOAMD64"); v != "" {
			p.Variant = v
		}
	}
	return p
}

// variantLevel returns the numeric level of a "vN" variant, with the
// architecture's baseline for "".
func variantLevel(arch, variant string) (int, bool) {
	if variant == "" {
		switch arch {
		case "arm64":
			return 8, true
		case "amd64":
			return 1, true
		case "arm":
			return 7, true // Docker treats arm without variant as v7
		}
		return 0, true
	}
	n, err := strconv.Atoi(strings.TrimPrefix(variant, "v"))
	if err != nil || !strings.HasPrefix(variant, "v") {
		return 0, false
	}
	return n, true
}

// matchScore rates how well an index entry's platform suits p: 0 does not
// run, otherwise higher is better (the exact variant before a lower,
// still compatible one).
func (p Platform) matchScore(o *ocispec.Platform) int {
	if o == nil {
		return 1 // no platform given: usable, least preferred
	}
	if o.OS != p.OS || o.Architecture != p.Architecture {
		return 0
	}
	want, ok1 := variantLevel(p.Architecture, p.Variant)
	have, ok2 := variantLevel(o.Architecture, o.Variant)
	switch {
	case !ok1 || !ok2:
		if o.Variant == p.Variant {
			return 100
		}
		return 0
	case have > want:
		return 0
	}
	return 2 + have
}

// SelectManifest picks the manifest for platform p from an image index's
// manifests: the OS and architecture must match and the variant must be p's
// or a lower one that p runs (arm v6 on v7, amd64 v1 on v3); among several
// the highest variant wins, then the first listed.
func SelectManifest(manifests []ocispec.Descriptor, p Platform) (ocispec.Descriptor, error) {
	best, bestScore := -1, 0
	var seen []string
	for i, d := range manifests {
		if d.Platform != nil {
			seen = append(seen, Platform{OS: d.Platform.OS, Architecture: d.Platform.Architecture, Variant: d.Platform.Variant}.String())
			if d.Platform.OS == "unknown" { // attestation manifests
				continue
			}
		}
		if s := p.matchScore(d.Platform); s > bestScore {
			best, bestScore = i, s
		}
	}
	if best < 0 {
		return ocispec.Descriptor{}, fmt.Errorf("no image for platform %s (the index has %s)", p, strings.Join(seen, ", "))
	}
	return manifests[best], nil
}
