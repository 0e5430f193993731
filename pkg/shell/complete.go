package shell

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
)

// complete is the shell's Tab: command names for the first word (and
// paths when it holds a slash), photonctl's verbs after "photonctl", and
// paths elsewhere.
func (s *Shell) complete(line []rune, pos int) (int, []string) {
	start := pos
	for start > 0 && !unicode.IsSpace(line[start-1]) {
		start--
	}
	word := string(line[start:pos])
	before := strings.Fields(string(line[:start]))
	switch {
	case len(before) == 0 && !strings.Contains(word, "/"):
		return start, withPrefix(s.Commands(), word)
	case len(before) == 1 && before[0] == "photonctl":
		return start, withPrefix(CtlVerbs(), word)
	}
	return start, s.completePath(word)
}

// withPrefix returns the names that start with prefix.
func withPrefix(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

// completePath returns the paths that complete word, directories with a
// trailing slash; dot files only when word's last element starts with a dot.
func (s *Shell) completePath(word string) []string {
	dirPart, base := "", word
	if i := strings.LastIndexByte(word, '/'); i >= 0 {
		dirPart, base = word[:i+1], word[i+1:]
	}
	dir := dirPart
	if dir == "" {
		dir = "."
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(s.Dir(), dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, base) || (strings.HasPrefix(n, ".") && !strings.HasPrefix(base, ".")) {
			continue
		}
		c := dirPart + n
		if fi, err := os.Stat(filepath.Join(dir, n)); err == nil && fi.IsDir() {
			c += "/"
		}
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}
