package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateExamples checks that every shipped example passes
// `photon-init validate`, file by file and as a directory.
func TestValidateExamples(t *testing.T) {
	dir := filepath.Join("..", "..", "configs", "examples", "containers")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example manifests in %s (%v)", dir, err)
	}
	args := append([]string{dir, filepath.Join("..", "..", "configs", "etc", "photon", "init.yaml")}, files...)
	var stdout, stderr bytes.Buffer
	if code := validate(args, &stdout, &stderr); code != 0 || stderr.Len() > 0 {
		t.Fatalf("validate examples: exit %d\n%s", code, stderr.String())
	}
	for _, f := range files {
		if n := strings.Count(stdout.String(), f+": ok\n"); n != 2 {
			t.Errorf("%s reported ok %d times, want 2 (as a file and in its directory):\n%s", f, n, stdout.String())
		}
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("m/good.yaml", "image: alpine:3\n")
	bad := write("m/bad.yml", "image: alpine:3\nrestart: maybe\n")
	dep := write("d/a.yaml", "image: alpine:3\ndepends_on: [ghost]\n")
	initGood := write("etc/photon/init.yaml", "hostname: box\n")
	initBad := write("other/init.yaml", "hostnme: box\n")
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		code      int
		out, errs []string // lines expected (substrings) on stdout / stderr
		noOut     []string // substrings that must not be on stdout
	}{
		{name: "usage", args: nil, code: 2, errs: []string{"usage: photon-init validate PATH..."}},
		{name: "good manifest", args: []string{good}, out: []string{good + ": ok"}},
		{name: "bad manifest", args: []string{bad}, code: 1, errs: []string{bad + `:2: field restart: "maybe" is not a restart policy`}, noOut: []string{bad}},
		{name: "single file skips cross-file rules", args: []string{dep}, out: []string{dep + ": ok"}},
		{name: "directory applies them", args: []string{filepath.Dir(dep)}, code: 1, errs: []string{dep + ":2: field depends_on[0]: depends on ghost, but no manifest defines ghost"}},
		{name: "directory mixed", args: []string{filepath.Dir(good)}, code: 1, out: []string{good + ": ok"}, errs: []string{bad + ":2: field restart"}, noOut: []string{bad}},
		{name: "init.yaml", args: []string{initGood}, out: []string{initGood + ": ok"}},
		{name: "bad init.yaml", args: []string{initBad}, code: 1, errs: []string{initBad + ":1: field hostnme not found"}},
		{name: "missing", args: []string{filepath.Join(dir, "nope.yaml")}, code: 1, errs: []string{"nope.yaml: no such file or directory"}},
		{name: "empty directory", args: []string{empty}, out: []string{empty + ": no manifests"}},
		{name: "one bad of many", args: []string{good, bad, initGood}, code: 1, out: []string{good + ": ok", initGood + ": ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := validate(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, w := range tt.out {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.errs {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			for _, w := range tt.noOut {
				if strings.Contains(stdout.String(), w) {
					t.Errorf("stdout has %q:\n%s", w, stdout.String())
				}
			}
		})
	}
}
