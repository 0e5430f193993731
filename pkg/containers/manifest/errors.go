package manifest

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a manifest, at a position in a file.
type Error struct {
	// File is the manifest's path.
	File string
	// Line is the 1-based line of the offending value, or 0 when the
	// problem has no position (an unreadable file, a bad file name).
	Line int
	// Field names the offending field: "image", "ports[1]",
	// "healthcheck.interval", "depends_on.db.condition"; "" when the
	// problem is not in one field (a YAML syntax error).
	Field string
	// Msg says what is wrong.
	Msg string
	// Err is the underlying error, if any (a read error), for errors.Is.
	Err error
}

// Error formats the problem as "FILE:LINE: field NAME: message", leaving
// out the line or the field when they are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString("field ")
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in one manifest (or, from LoadDir, in one
// directory), ordered by file and line.
type Errors []*Error

// Error joins the problems, one per line.
func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the problems as errors, so that errors.Is and errors.As
// look at each of them.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortErrors orders errors by file, then line, keeping the order of
// errors on one line.
func sortErrors(es []*Error) {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].File != es[j].File {
			return es[i].File < es[j].File
		}
		return es[i].Line < es[j].Line
	})
}
