package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// cmdValidate is "photon-init validate FILE|DIR...": it checks machine
// configuration and container manifests offline with the same code the
// boot uses, printing "FILE: ok" or every problem as "FILE:LINE: ...".
// Exit status 1 if anything is bad, 2 on a usage error.
func cmdValidate(args []string) int {
	return validate(args, os.Stdout, os.Stderr)
}

// validate checks each argument: a file named init.yaml is machine
// configuration (pkg/config); any other file is one container manifest;
// a directory is a manifest directory, checked with the rules between
// its files (names, dependencies, cycles).
func validate(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: photon-init validate PATH...")
		return 2
	}
	status := 0
	for _, path := range args {
		if !validatePath(path, stdout, stderr) {
			status = 1
		}
	}
	return status
}

// validatePath checks one argument and reports whether it is good.
func validatePath(path string, stdout, stderr io.Writer) bool {
	fi, err := os.Stat(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, unwrapPath(err))
		return false
	}
	if fi.IsDir() {
		return validateDir(path, stdout, stderr)
	}
	if filepath.Base(path) == "init.yaml" {
		err = configErr(config.Load(path))
	} else {
		_, err = manifest.Load(path)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return false
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return true
}

// configErr drops config.Load's configuration, keeping the error.
func configErr(_ *config.Config, err error) error { return err }

// validateDir checks every manifest in dir and the rules between them,
// printing "FILE: ok" for each manifest without a problem.
func validateDir(dir string, stdout, stderr io.Writer) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", dir, unwrapPath(err))
		return false
	}
	_, errs := manifest.LoadDir(dir)
	bad := map[string]bool{}
	for _, e := range errs {
		fmt.Fprintln(stderr, e)
		var me *manifest.Error
		if errors.As(e, &me) {
			bad[me.File] = true
		}
	}
	n := 0
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if !manifest.IsManifestName(e.Name()) {
			continue
		}
		if fi, err := os.Stat(p); err == nil && !fi.Mode().IsRegular() {
			continue
		}
		n++
		if !bad[p] {
			fmt.Fprintf(stdout, "%s: ok\n", p)
		}
	}
	if n == 0 && len(errs) == 0 {
		fmt.Fprintf(stdout, "%s: no manifests (*.yaml, *.yml)\n", dir)
	}
	return len(errs) == 0
}

// unwrapPath drops the path an *os.PathError repeats.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
