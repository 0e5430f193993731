//go:build !(cgo && seccomp && amd64)

package container

// No program is built in on this architecture or without seccomp: every
// profile is compiled on first use (see seccompPrograms).
const (
	builtinSeccompKey        = ""
	builtinSeccompFlags uint = 0
)

// builtinSeccompFilter is empty here (see seccomp_builtin_amd64.go).
var builtinSeccompFilter []byte
