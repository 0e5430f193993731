package manifest

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	"gopkg.in/yaml.v3"
)

// decoder walks a manifest's YAML node tree, collecting every problem
// instead of stopping at the first.
type decoder struct {
	file string // the manifest's path, for errors
	dir  string // the manifest's directory, for env_file and relative binds
	errs []*Error

	// Where values were written, for the cross-checks run after all
	// fields are decoded.
	placedMounts  []placed            // volume and tmpfs targets
	placedDevices []placed            // device container paths
	placedCaps    map[string][]placed // "cap_add"/"cap_drop" -> normalised names
	placedPorts   []placedPort
	placedDeps    map[string]placed // depends_on entries by name
	nameNode      *yaml.Node        // the name field's value, if written
	networkNode   *yaml.Node        // network_mode's value, if written

	mergeDepth int  // merge keys being expanded
	work       int  // mapping entries visited, merges included
	tooComplex bool // the merge limits were hit (reported once)
}

// Limits on merge-key expansion (a manifest is small; these only stop a
// file that refers to itself or multiplies aliases from hanging PID 1).
const (
	maxMergeDepth = 32
	maxWork       = 1 << 20
)

// placed is a decoded value and where it was written.
type placed struct {
	key   string
	field string
	node  *yaml.Node
}

// placedPort is a published port and where it was written.
type placedPort struct {
	port  Port
	field string
	node  *yaml.Node
}

// errorf records a problem with the value at n (which may be nil).
func (d *decoder) errorf(n *yaml.Node, field, format string, a ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Field: field, Msg: fmt.Sprintf(format, a...)})
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is YAML's null (`~`, `null` or nothing).
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names what n is, for "expected X, found Y" messages.
func describe(n *yaml.Node) string {
	n = resolve(n)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean (" + n.Value + ")"
		case "!!int", "!!float":
			return "a number (" + n.Value + ")"
		}
		return fmt.Sprintf("the string %q", n.Value)
	}
	return "a document"
}

// entry is one key and value of a mapping.
type entry struct {
	key      string
	keyNode  *yaml.Node
	val      *yaml.Node
	fromLine int // line of the explicit key; for merged keys, of the `<<`
}

// entries returns the pairs of mapping n, with YAML merge keys (`<<:
// *anchor`) applied: keys written in the mapping override merged ones.
// A duplicate key or a non-scalar key is an error.
func (d *decoder) entries(n *yaml.Node, field string) ([]entry, bool) {
	m := resolve(n)
	if m == nil || m.Kind != yaml.MappingNode {
		d.errorf(n, field, "expected a mapping, found %s", describe(n))
		return nil, false
	}
	// Merge keys can refer to themselves or multiply through aliases:
	// bound both the nesting and the total work.
	d.work += len(m.Content)
	if d.mergeDepth > maxMergeDepth || d.work > maxWork {
		if !d.tooComplex {
			d.tooComplex = true
			d.errorf(n, field, "merge keys nested too deep, refer to themselves, or expand too much")
		}
		return nil, false
	}
	var out, merged []entry
	seen := map[string]int{} // key -> line of its first definition
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(v, field)...)
			continue
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!null" {
			d.errorf(k, field, "a key must be a plain string, found %s", describe(k))
			continue
		}
		name := join(field, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, name, "defined twice (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, entry{key: k.Value, keyNode: k, val: v, fromLine: k.Line})
	}
	for _, e := range merged {
		if _, ok := seen[e.key]; ok {
			continue
		}
		seen[e.key] = e.keyNode.Line
		out = append(out, e)
	}
	return out, true
}

// mergeSources returns the entries that a `<<` value brings in: one
// mapping, or a list of mappings where earlier ones win.
func (d *decoder) mergeSources(v *yaml.Node, field string) []entry {
	r := resolve(v)
	var srcs []*yaml.Node
	switch {
	case r != nil && r.Kind == yaml.MappingNode:
		srcs = []*yaml.Node{v}
	case r != nil && r.Kind == yaml.SequenceNode:
		srcs = r.Content
	default:
		d.errorf(v, join(field, "<<"), "a merge key needs a mapping or a list of mappings, found %s", describe(v))
		return nil
	}
	var out []entry
	have := map[string]bool{}
	d.mergeDepth++
	defer func() { d.mergeDepth-- }()
	for _, s := range srcs {
		es, ok := d.entries(s, field)
		if !ok {
			continue
		}
		for _, e := range es {
			if !have[e.key] {
				have[e.key] = true
				out = append(out, e)
			}
		}
	}
	return out
}

// fieldFunc decodes one field's (non-null) value.
type fieldFunc func(n *yaml.Node, field string)

// fields decodes mapping n with one handler per known key. A null value
// leaves the field unset. Unknown keys are errors; explain, when not nil,
// may give a better message for a key than "unknown field".
func (d *decoder) fields(n *yaml.Node, path string, known map[string]fieldFunc, explain func(key string) string) {
	es, ok := d.entries(n, path)
	if !ok {
		return
	}
	for _, e := range es {
		name := join(path, e.key)
		h, ok := known[e.key]
		if !ok {
			msg := ""
			if explain != nil {
				msg = explain(e.key)
			}
			if msg == "" {
				msg = "unknown field" + suggest(e.key, known)
			}
			if msg != "-" {
				d.errorf(e.keyNode, name, "%s", msg)
			}
			continue
		}
		if isNull(e.val) {
			continue
		}
		h(e.val, name)
	}
}

// join appends a key to a dotted field path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// index names a list item: "ports[2]".
func index(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// suggest returns " (did you mean X?)" for a key close to a known one.
func suggest(key string, known map[string]fieldFunc) string {
	best, bestDist := "", 3
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if dist := editDistance(key, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// str returns the text of a scalar. Numbers and booleans are taken as
// written (`user: 1000`); lists, mappings and null are errors.
func (d *decoder) str(n *yaml.Node, field string) (string, bool) {
	r := resolve(n)
	if r == nil || r.Kind != yaml.ScalarNode || r.ShortTag() == "!!null" {
		d.errorf(n, field, "expected a string, found %s", describe(n))
		return "", false
	}
	return r.Value, true
}

// boolean returns a YAML boolean (true or false).
func (d *decoder) boolean(n *yaml.Node, field string) (bool, bool) {
	r := resolve(n)
	if r == nil || r.Kind != yaml.ScalarNode || r.ShortTag() != "!!bool" {
		d.errorf(n, field, "expected true or false, found %s", describe(n))
		return false, false
	}
	return strings.EqualFold(r.Value, "true"), true
}

// integer returns a whole number, written as a YAML number or a string.
func (d *decoder) integer(n *yaml.Node, field string) (int64, bool) {
	r := resolve(n)
	if r == nil || r.Kind != yaml.ScalarNode || r.ShortTag() == "!!null" || r.ShortTag() == "!!bool" {
		d.errorf(n, field, "expected an integer, found %s", describe(n))
		return 0, false
	}
	v, err := strconv.ParseInt(r.Value, 10, 64)
	if err != nil {
		v, err = strconv.ParseInt(r.Value, 0, 64)
	}
	if err != nil {
		d.errorf(n, field, "expected an integer, found %s", describe(n))
		return 0, false
	}
	return v, true
}

// list returns the items of a sequence.
func (d *decoder) list(n *yaml.Node, field string) ([]*yaml.Node, bool) {
	r := resolve(n)
	if r == nil || r.Kind != yaml.SequenceNode {
		d.errorf(n, field, "expected a list, found %s", describe(n))
		return nil, false
	}
	return r.Content, true
}

// item is a string taken from a string-or-list field, with its node.
type item struct {
	val   string
	node  *yaml.Node
	field string
}

// stringList decodes a field that is one string or a list of strings. The
// items of a single string have the field's own name; list items are
// named field[i].
func (d *decoder) stringList(n *yaml.Node, field string) ([]item, bool) {
	r := resolve(n)
	if r != nil && r.Kind == yaml.ScalarNode {
		s, ok := d.str(n, field)
		if !ok {
			return nil, false
		}
		return []item{{s, n, field}}, true
	}
	if r == nil || r.Kind != yaml.SequenceNode {
		d.errorf(n, field, "expected a string or a list of strings, found %s", describe(n))
		return nil, false
	}
	return d.scalarItems(r, field)
}

// scalarItems decodes the items of sequence r as strings, naming them
// field[i].
func (d *decoder) scalarItems(r *yaml.Node, field string) ([]item, bool) {
	out := []item{}
	good := true
	for i, c := range r.Content {
		f := index(field, i)
		s, ok := d.str(c, f)
		if !ok {
			good = false
			continue
		}
		out = append(out, item{s, c, f})
	}
	return out, good
}

// keyValue is one entry of a field written as a mapping or as a list of
// "KEY=VALUE" strings (environment, labels, sysctls).
type keyValue struct {
	key, val string
	hasVal   bool // false for a list item "KEY" or a mapping's null value
	node     *yaml.Node
	field    string
}

// keyValues decodes a mapping or a list of KEY=VALUE strings. Mapping
// values must be scalars; null means "no value".
func (d *decoder) keyValues(n *yaml.Node, field string) ([]keyValue, bool) {
	r := resolve(n)
	if r != nil && r.Kind == yaml.SequenceNode {
		items, good := d.scalarItems(r, field)
		out := make([]keyValue, 0, len(items))
		for _, it := range items {
			k, v, has := strings.Cut(it.val, "=")
			out = append(out, keyValue{key: k, val: v, hasVal: has, node: it.node, field: it.field})
		}
		return out, good
	}
	if r == nil || r.Kind != yaml.MappingNode {
		d.errorf(n, field, "expected a mapping or a list of KEY=VALUE strings, found %s", describe(n))
		return nil, false
	}
	es, ok := d.entries(n, field)
	if !ok {
		return nil, false
	}
	out := []keyValue{}
	good := true
	for _, e := range es {
		f := join(field, e.key)
		if isNull(e.val) {
			out = append(out, keyValue{key: e.key, node: e.keyNode, field: f})
			continue
		}
		v, ok := d.str(e.val, f)
		if !ok {
			good = false
			continue
		}
		out = append(out, keyValue{key: e.key, val: v, hasVal: true, node: e.val, field: f})
	}
	return out, good
}

// duration decodes a Compose duration: "10s", "1m30s", "500ms", "1h".
// A bare number is refused, since its unit would be a guess.
func (d *decoder) duration(n *yaml.Node, field string) (time.Duration, bool) {
	return parsed(d, n, field, ParseDuration)
}

// parsed decodes a scalar with parse, reporting its error at n.
func parsed[T any](d *decoder, n *yaml.Node, field string, parse func(string) (T, error)) (T, bool) {
	var zero T
	s, ok := d.str(n, field)
	if !ok {
		return zero, false
	}
	v, err := parse(s)
	if err != nil {
		d.errorf(n, field, "%v", err)
		return zero, false
	}
	return v, true
}

// decodeList decodes a list whose items are strings, parsed by short, or
// (when long is not nil) mappings in Compose's long syntax, decoded by
// long. One item may give several values (a port range); place records
// where each value was written. Bad items are reported and left out.
func decodeList[T any](d *decoder, n *yaml.Node, field string,
	short func(string) ([]T, error), long func(*yaml.Node, string) ([]T, bool),
	place func(T, string, *yaml.Node)) []T {
	items, ok := d.list(n, field)
	if !ok {
		return nil
	}
	out := []T{}
	for i, it := range items {
		f := index(field, i)
		var vs []T
		if r := resolve(it); long != nil && r != nil && r.Kind == yaml.MappingNode {
			if vs, ok = long(it, f); !ok {
				continue
			}
		} else if vs, ok = parsed(d, it, f, short); !ok {
			continue
		}
		for _, v := range vs {
			place(v, f, it)
		}
		out = append(out, vs...)
	}
	return out
}

// ParseDuration parses a Compose duration: a sequence of numbers with
// units (us, ms, s, m, h), such as "10s", "1m30s", "1.5s" or "500ms".
// Negative durations and numbers without a unit are errors.
func ParseDuration(s string) (time.Duration, error) {
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("%q needs a unit, such as %ss", s, s)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (such as 10s, 1m30s, 500ms)", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return v, nil
}

// byteSize decodes a size in bytes: a plain number, or a number with a
// binary unit as Compose takes it ("512m", "1g", "1024k", "64mb").
func (d *decoder) byteSize(n *yaml.Node, field string) (int64, bool) {
	return parsed(d, n, field, ParseBytes)
}

// ParseBytes parses a size as Compose does (mem_limit, tmpfs size): a
// number of bytes, or a number followed by k, m, g, t or p, which are
// binary multiples whatever the spelling ("512m", "1g", "1gb", "1GiB" and
// "1024k" all count in 1024s; case does not matter).
func ParseBytes(s string) (int64, error) {
	v, err := units.RAMInBytes(strings.TrimSpace(s))
	if err != nil || v < 0 || v > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (such as 512m, 1g, 1024k or a number of bytes)", s)
	}
	return v, nil
}
