package image

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Docker's defaults for names without a registry or a namespace.
const (
	// DefaultDomain is the registry of a name that does not name one.
	DefaultDomain = "docker.io"
	// legacyDomain is Docker Hub's old name, normalised to DefaultDomain.
	legacyDomain = "index.docker.io"
	// officialPrefix is the namespace of a one-component Docker Hub name.
	officialPrefix = "library/"
	// maxPathLength is the longest repository path Docker accepts.
	maxPathLength = 255
	// maxTagLength is the longest tag Docker accepts.
	maxTagLength = 128
)

// Named is a registry image reference, normalised as Docker normalises it
// (the grammar and the rules of github.com/distribution/reference, parsed
// by hand: that package compiles a dozen regular expressions when the
// program starts, a cost every exec of photon-init would pay).
type Named struct {
	// Domain is the registry: "docker.io", "ghcr.io", "host:5000".
	Domain string
	// Path is the repository inside it: "library/busybox", "o/app".
	Path string
	// Tag is the tag, "" when the reference has only a digest.
	Tag string
	// Digest pins the manifest, "" if not pinned.
	Digest digest.Digest
}

// Name returns the repository's full name: "docker.io/library/busybox".
func (n *Named) Name() string { return n.Domain + "/" + n.Path }

// String returns the normalised reference: NAME[:TAG][@DIGEST].
func (n *Named) String() string {
	s := n.Name()
	if n.Tag != "" {
		s += ":" + n.Tag
	}
	if n.Digest != "" {
		s += "@" + string(n.Digest)
	}
	return s
}

// ParseNamed parses a registry reference as Docker does ("x:tag" is
// "docker.io/library/x:tag", "index.docker.io/..." is "docker.io/...");
// a reference with neither tag nor digest gets the tag "latest".
func ParseNamed(s string) (*Named, error) {
	n, err := parseNamed(s)
	if err != nil {
		return nil, fmt.Errorf("invalid reference format: %w", err)
	}
	if n.Tag == "" && n.Digest == "" {
		n.Tag = "latest"
	}
	return n, nil
}

// parseNamed is distribution/reference's ParseNormalizedNamed.
func parseNamed(s string) (*Named, error) {
	if s == "" {
		return nil, fmt.Errorf("repository name must have at least one component")
	}
	if len(s) == 64 && strings.Trim(s, "0123456789abcdef") == "" {
		return nil, fmt.Errorf("invalid repository name (%s), cannot specify 64-byte hexadecimal strings", s)
	}
	domain, remainder := splitDomain(s)
	if remote, _, _ := strings.Cut(remainder, ":"); strings.ToLower(remote) != remote {
		return nil, fmt.Errorf("repository name (%s) must be lowercase", remote)
	}
	n := &Named{Domain: domain}
	rest, dgst, pinned := strings.Cut(remainder, "@")
	if pinned {
		d, err := digest.Parse(dgst)
		if err != nil {
			return nil, fmt.Errorf("digest %q: %w", dgst, err)
		}
		n.Digest = d
	}
	// The remainder has no registry left, so a ":" can only start the tag.
	n.Path, n.Tag, _ = strings.Cut(rest, ":")
	if rest != n.Path && !validTag(n.Tag) {
		return nil, fmt.Errorf("tag %q: want at most %d of A-Z a-z 0-9 _ . - (not . or - first)", n.Tag, maxTagLength)
	}
	if !validDomain(n.Domain) {
		return nil, fmt.Errorf("registry %q: want a host name, an IP address or [IPv6], with an optional :PORT", n.Domain)
	}
	if !validPath(n.Path) {
		return nil, fmt.Errorf("repository %q: want components of a-z 0-9 joined by \".\", \"_\", \"__\" or dashes, separated by \"/\"", n.Path)
	}
	if len(n.Path) > maxPathLength {
		return nil, fmt.Errorf("repository name must not be more than %d characters", maxPathLength)
	}
	return n, nil
}

// splitDomain is distribution/reference's splitDockerDomain: the first
// component is the registry if it is "localhost", contains "." or ":" or
// an upper-case letter.
func splitDomain(name string) (domain, remainder string) {
	first, rest, ok := strings.Cut(name, "/")
	switch {
	case !ok:
		return DefaultDomain, officialPrefix + name
	case first == "localhost", strings.ContainsAny(first, ".:"), strings.ToLower(first) != first:
		domain, remainder = first, rest
	default:
		domain, remainder = DefaultDomain, name
	}
	if domain == legacyDomain {
		domain = DefaultDomain
	}
	if domain == DefaultDomain && !strings.Contains(remainder, "/") {
		remainder = officialPrefix + remainder
	}
	return domain, remainder
}

// validTag matches [\w][\w.-]{0,127}.
func validTag(t string) bool {
	if t == "" || len(t) > maxTagLength || t[0] == '.' || t[0] == '-' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// validDomain matches (domain-name | "[" IPv6 "]") (":" port)?, a
// domain-name being components of letters, digits and inner dashes
// joined by ".".
func validDomain(d string) bool {
	host, port := d, ""
	if strings.HasPrefix(d, "[") {
		end := strings.IndexByte(d, ']')
		if end < 2 || strings.Trim(d[1:end], "0123456789abcdefABCDEF:") != "" {
			return false
		}
		host, port = "", d[end+1:]
		if port != "" && port[0] != ':' {
			return false
		}
	} else if i := strings.IndexByte(d, ':'); i >= 0 {
		host, port = d[:i], d[i:]
	}
	if port != "" && (len(port) == 1 || strings.Trim(port[1:], "0123456789") != "") {
		return false
	}
	if host == "" {
		return strings.HasPrefix(d, "[")
	}
	for _, c := range strings.Split(host, ".") {
		if c == "" || c[0] == '-' || c[len(c)-1] == '-' {
			return false
		}
		for i := 0; i < len(c); i++ {
			if !isAlnum(c[i]) && c[i] != '-' {
				return false
			}
		}
	}
	return true
}

// validPath matches components of [a-z0-9]+ joined by separators ".",
// "_", "__" or one or more "-", the components separated by "/".
func validPath(p string) bool {
	for _, c := range strings.Split(p, "/") {
		if !validComponent(c) {
			return false
		}
	}
	return true
}

// validComponent matches [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*.
func validComponent(c string) bool {
	i := 0
	for {
		start := i
		for i < len(c) && (c[i] >= 'a' && c[i] <= 'z' || c[i] >= '0' && c[i] <= '9') {
			i++
		}
		if i == start {
			return false
		}
		if i == len(c) {
			return true
		}
		switch c[i] {
		case '.':
			i++
		case '_':
			i++
			if i < len(c) && c[i] == '_' {
				i++
			}
		case '-':
			for i < len(c) && c[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

// isAlnum reports whether c is an ASCII letter or digit.
func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
