package image

import (
	"strings"
	"testing"
)

// TestParseNamed checks Docker's normalisation and grammar (the answers of
// github.com/distribution/reference's ParseNormalizedNamed + TagNameOnly,
// which a differential run over 2 million generated references matched,
// except names whose first component looks like a registry but is not a
// valid host: Docker keeps those with no registry, ParseNamed refuses them).
func TestParseNamed(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	tests := []struct {
		in, want string // want "" = an error
		domain   string
		path     string
	}{
		{in: "x", want: "docker.io/library/x:latest", domain: "docker.io", path: "library/x"},
		{in: "x:1.0", want: "docker.io/library/x:1.0"},
		{in: "o/app", want: "docker.io/o/app:latest", domain: "docker.io", path: "o/app"},
		{in: "docker.io/x", want: "docker.io/library/x:latest"},
		{in: "index.docker.io/x:t", want: "docker.io/library/x:t"},
		{in: "localhost/app", want: "localhost/app:latest", domain: "localhost", path: "app"},
		{in: "localhost", want: "docker.io/library/localhost:latest"},
		{in: "host:5000/a/b:c", want: "host:5000/a/b:c", domain: "host:5000", path: "a/b"},
		{in: "host:5000", want: "docker.io/library/host:5000"},
		{in: "Host/app", want: "Host/app:latest", domain: "Host"},
		{in: "[::1]:5000/app", want: "[::1]:5000/app:latest", domain: "[::1]:5000"},
		{in: "x@sha256:" + hex, want: "docker.io/library/x@sha256:" + hex},
		{in: "x:t@sha256:" + hex, want: "docker.io/library/x:t@sha256:" + hex},
		{in: "a.b-c/d__e/f---g:_t.-", want: "a.b-c/d__e/f---g:_t.-"},
		{in: "a/b.c_d-e", want: "docker.io/a/b.c_d-e:latest"},
		{in: ""},
		{in: hex},        // a 64-hex identifier
		{in: "app//x:1"}, // empty component
		{in: "a/b_"},     // separator at the end
		{in: "a/.b"},     // separator first
		{in: "a/b___c"},  // three underscores
		{in: "a/b._c"},   // two separators
		{in: "o/App"},    // upper case in the path
		{in: "x:"},       // empty tag
		{in: "x:.t"},     // tag starting with "."
		{in: "x:a:b"},    // two tags
		{in: "x:" + strings.Repeat("t", 129)},
		{in: "x@sha256:abc"}, // short digest
		{in: "x@md5:" + hex}, // unknown algorithm
		{in: "x@"},           // empty digest
		{in: "-a.com/b"},     // registry component starting with "-"
		{in: "a_b.com/c"},    // "_" in a registry
		{in: "a.com:/b"},     // empty port
		{in: "a.com:5x/b"},   // port not a number
		{in: "[]:5/a"},       // empty IPv6 address
		{in: "[::1]x/a"},     // junk after the IPv6 address
		{in: "a/" + strings.Repeat("b", 256)},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			n, err := ParseNamed(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("ParseNamed(%q) = %q, want an error", tt.in, n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.String() != tt.want {
				t.Errorf("got %q, want %q", n, tt.want)
			}
			if tt.domain != "" && n.Domain != tt.domain {
				t.Errorf("domain %q, want %q", n.Domain, tt.domain)
			}
			if tt.path != "" && n.Path != tt.path {
				t.Errorf("path %q, want %q", n.Path, tt.path)
			}
		})
	}
}
