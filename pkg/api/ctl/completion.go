package ctl

import _ "embed"

//go:embed photonctl.bash
var bashCompletion string

// BashCompletion returns the bash completion script for photonctl: verbs,
// flags, flag values, and container names (from "photonctl ps -q" on the
// socket given on the command line, if any).
func BashCompletion() string { return bashCompletion }
