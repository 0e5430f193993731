package blockdev

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Spec names a device the way fstab and the kernel command line do.
type Spec struct {
	// Key is "LABEL", "UUID", "PARTUUID" or "PARTLABEL", or "" for a
	// device path.
	Key string
	// Value is the label, UUID or path.
	Value string
}

// SpecKeys are the KEY= forms ParseSpec accepts.
var SpecKeys = []string{"LABEL", "UUID", "PARTUUID", "PARTLABEL"}

// ParseSpec parses "LABEL=x", "UUID=x", "PARTUUID=x", "PARTLABEL=x" or an
// absolute device path ("/dev/vdb"). Values may be in double quotes, as in
// fstab.
func ParseSpec(s string) (Spec, error) {
	if strings.HasPrefix(s, "/") {
		if filepath.Clean(s) != s {
			return Spec{}, fmt.Errorf("device path %q is not clean (want %q)", s, filepath.Clean(s))
		}
		return Spec{Value: s}, nil
	}
	key, val, ok := strings.Cut(s, "=")
	if !ok {
		return Spec{}, fmt.Errorf("%q is not a device: want LABEL=, UUID=, PARTUUID=, PARTLABEL= or a /dev path", s)
	}
	if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
		val = val[1 : len(val)-1]
	}
	key = strings.ToUpper(key)
	known := false
	for _, k := range SpecKeys {
		known = known || key == k
	}
	switch {
	case !known:
		return Spec{}, fmt.Errorf("%q: unknown key %s= (want LABEL=, UUID=, PARTUUID=, PARTLABEL= or a /dev path)", s, key)
	case val == "":
		return Spec{}, fmt.Errorf("%q: empty %s", s, key)
	case strings.ContainsAny(val, "\x00\n"):
		return Spec{}, fmt.Errorf("%q: control characters in %s", s, key)
	}
	return Spec{Key: key, Value: val}, nil
}

// String renders the spec as ParseSpec reads it.
func (s Spec) String() string {
	if s.Key == "" {
		return s.Value
	}
	return s.Key + "=" + s.Value
}

// IsPath reports whether the spec is a device path.
func (s Spec) IsPath() bool { return s.Key == "" }

// Matches reports whether device d is the one the spec names. A path spec
// matches the device's node path; Scanner.Find also resolves paths through
// their device numbers.
func (s Spec) Matches(d Device) bool {
	switch s.Key {
	case "LABEL":
		return d.Filesystem.Label == s.Value
	case "UUID":
		return d.Filesystem.UUID != "" && strings.EqualFold(d.Filesystem.UUID, s.Value)
	case "PARTUUID":
		return d.PartUUID != "" && strings.EqualFold(d.PartUUID, s.Value)
	case "PARTLABEL":
		return d.PartLabel == s.Value && d.Partition > 0
	case "":
		return d.Path == s.Value
	}
	return false
}
