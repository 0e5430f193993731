package kmod

import (
	"slices"
	"strings"
)

// alias is one "alias PATTERN MODULE" line.
type alias struct {
	raw     string // pattern as written in modules.alias
	pattern string // normalised pattern
	module  string // normalised module name
	prefix  int    // length of the literal text before the first wildcard
}

// aliasTable matches strings against many fnmatch patterns. Patterns are
// bucketed by their literal prefix (the text before the first wildcard): a
// string s can only match patterns whose prefix is a prefix of s, so matching
// looks up s[:n] for each distinct prefix length n instead of trying every
// pattern. With Debian's 26,000 aliases there are fewer than a hundred
// distinct prefix lengths, and a modalias meets a handful of candidates.
type aliasTable struct {
	list    []alias
	buckets map[string][]int32
	lens    []int // distinct prefix lengths, ascending
}

func newAliasTable() *aliasTable {
	return &aliasTable{buckets: map[string][]int32{}}
}

// literalPrefix returns the length of p before its first special character.
func literalPrefix(p string) int {
	if i := strings.IndexAny(p, "*?[\\"); i >= 0 {
		return i
	}
	return len(p)
}

func (t *aliasTable) add(raw, module string) {
	p := normalizeAlias(raw)
	n := literalPrefix(p)
	t.list = append(t.list, alias{raw: raw, pattern: p, module: module, prefix: n})
	t.buckets[p[:n]] = append(t.buckets[p[:n]], int32(len(t.list)-1))
}

// build computes the distinct prefix lengths once all patterns are added.
func (t *aliasTable) build() {
	seen := map[int]bool{}
	t.lens = t.lens[:0]
	for _, a := range t.list {
		if !seen[a.prefix] {
			seen[a.prefix] = true
			t.lens = append(t.lens, a.prefix)
		}
	}
	slices.Sort(t.lens)
}

// match returns the modules of the patterns matching s (already
// normalised), in table order, each module once.
func (t *aliasTable) match(s string) []string {
	var hits []int32
	for _, n := range t.lens {
		if n > len(s) {
			break
		}
		for _, i := range t.buckets[s[:n]] {
			a := &t.list[i]
			if fnmatch(a.pattern[n:], s[n:]) {
				hits = append(hits, i)
			}
		}
	}
	if len(hits) == 0 {
		return nil
	}
	slices.Sort(hits)
	out := make([]string, 0, len(hits))
	for _, i := range hits {
		if m := t.list[i].module; !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// fnmatch reports whether s matches the shell pattern p with the semantics
// of fnmatch(3) without flags, as libkmod uses it: "*" matches any string
// (including "/"), "?" any one byte, "[...]" a bracket expression ("!" or
// "^" negates, ranges, [:class:]), and "\" quotes the next byte. An
// unterminated "[" matches itself. Matching is byte-wise; modaliases are
// ASCII.
func fnmatch(p, s string) bool {
	px, sx := 0, 0
	starP, starS := -1, 0
	for px < len(p) || sx < len(s) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				// Remember the star; first try matching it against the
				// empty string.
				starP, starS = px, sx
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			case '[':
				if sx < len(s) {
					ok, width, valid := matchBracket(p[px:], s[sx])
					if !valid {
						ok, width = s[sx] == '[', 1
					}
					if ok {
						px += width
						sx++
						continue
					}
				}
			case '\\':
				lit, w := byte('\\'), 1
				if px+1 < len(p) {
					lit, w = p[px+1], 2
				}
				if sx < len(s) && s[sx] == lit {
					px += w
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		// Mismatch: let the last star swallow one more byte, if any.
		if starP >= 0 && starS < len(s) {
			starS++
			// When a literal byte follows the star, only positions
			// holding that byte can match: skip to the next one.
			if next := starP + 1; next < len(p) && !isSpecial(p[next]) {
				i := strings.IndexByte(s[starS:], p[next])
				if i < 0 {
					return false
				}
				starS += i
			}
			px, sx = starP+1, starS
			continue
		}
		return false
	}
	return true
}

func isSpecial(c byte) bool { return c == '*' || c == '?' || c == '[' || c == '\\' }

// matchBracket matches c against the bracket expression at the start of p
// (p[0] == '['). It returns whether c matched, the expression's width, and
// false for valid if the expression is unterminated.
func matchBracket(p string, c byte) (matched bool, width int, valid bool) {
	i := 1
	negate := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		negate = true
		i++
	}
	first := true
	for {
		if i >= len(p) {
			return false, 0, false
		}
		ch := p[i]
		if ch == ']' && !first {
			i++
			break
		}
		first = false
		if ch == '[' && i+1 < len(p) && p[i+1] == ':' {
			if end := strings.Index(p[i+2:], ":]"); end >= 0 {
				if classMatch(p[i+2:i+2+end], c) {
					matched = true
				}
				i += 2 + end + 2
				continue
			}
		}
		if ch == '\\' && i+1 < len(p) {
			i++
			ch = p[i]
		}
		i++
		lo := ch
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi := p[i+1]
			i += 2
			if hi == '\\' && i < len(p) {
				hi = p[i]
				i++
			}
			if lo <= c && c <= hi {
				matched = true
			}
			continue
		}
		if c == lo {
			matched = true
		}
	}
	return matched != negate, i, true
}

// classMatch implements the POSIX character classes of bracket expressions
// for ASCII.
func classMatch(class string, c byte) bool {
	isUpper := 'A' <= c && c <= 'Z'
	isLower := 'a' <= c && c <= 'z'
	isDigit := '0' <= c && c <= '9'
	switch class {
	case "alpha":
		return isUpper || isLower
	case "digit":
		return isDigit
	case "alnum":
		return isUpper || isLower || isDigit
	case "upper":
		return isUpper
	case "lower":
		return isLower
	case "xdigit":
		return isDigit || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
	case "space":
		return c == ' ' || ('\t' <= c && c <= '\r')
	case "blank":
		return c == ' ' || c == '\t'
	case "cntrl":
		return c < 0x20 || c == 0x7f
	case "print":
		return 0x20 <= c && c < 0x7f
	case "graph":
		return 0x20 < c && c < 0x7f
	case "punct":
		return 0x20 < c && c < 0x7f && !isUpper && !isLower && !isDigit
	}
	return false
}
