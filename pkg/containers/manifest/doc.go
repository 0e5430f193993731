// Package manifest reads container manifests: one YAML file per
// container in /etc/photon/containers (*.yaml, *.yml), with field names
// following Docker Compose's service keys (docs/containers.md describes
// every field).
//
// Decoding walks the YAML node tree, so that every problem of a file is
// reported, not only the first, each as an *Error "FILE:LINE: field NAME:
// message": an unknown field, a value of the wrong type, a value that
// fails validation, or two fields that contradict each other. Load and
// Parse check one file; LoadDir checks a directory, adding the rules
// between files (unique names, dependencies that exist, no cycles), and
// StartOrder gives the dependency order as waves that can start in
// parallel.
//
// The decoded Container is the manifest alone: combining it with the
// image's own configuration (Docker's rules) is the runtime's job.
package manifest
