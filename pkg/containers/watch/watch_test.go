package watch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// watched runs Run on a new directory (created when create is true) and
// returns the directory and the sets handed on.
func watched(t *testing.T, create bool, debounce time.Duration) (string, <-chan Set) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "containers")
	if create {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	sets := make(chan Set, 100)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{Dir: dir, Debounce: debounce}, func(s Set) { sets <- s }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return dir, sets
}

// next waits for the next set.
func next(t *testing.T, sets <-chan Set) Set {
	t.Helper()
	select {
	case s := <-sets:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no reload")
		return Set{}
	}
}

// none checks that no set comes within d.
func none(t *testing.T, sets <-chan Set, d time.Duration) {
	t.Helper()
	select {
	case s := <-sets:
		t.Fatalf("unexpected reload: %s", describe(s))
	case <-time.After(d):
	}
}

// describe writes a set as "name=command ...; N errors".
func describe(s Set) string {
	var parts []string
	for _, c := range s.Containers {
		parts = append(parts, c.Name+"="+strings.Join(c.Command, " "))
	}
	out := strings.Join(parts, " ")
	for _, e := range s.Errors {
		out += "; " + e.Error()
	}
	return out
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestInitialSetAndChanges(t *testing.T) {
	dir, sets := watched(t, true, 20*time.Millisecond)
	if s := next(t, sets); len(s.Containers) != 0 || len(s.Errors) != 0 {
		t.Fatalf("initial set of an empty directory: %s", describe(s))
	}

	// Written to a temporary name, renamed into place.
	write(t, filepath.Join(dir, "web.yaml.tmp"), "image: alpine\ncommand: [one]\n")
	if err := os.Rename(filepath.Join(dir, "web.yaml.tmp"), filepath.Join(dir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	if got := describe(next(t, sets)); got != "web=one" {
		t.Fatalf("after rename into place: %q", got)
	}

	// Written in place.
	write(t, filepath.Join(dir, "web.yaml"), "image: alpine\ncommand: [two]\n")
	if got := describe(next(t, sets)); got != "web=two" {
		t.Fatalf("after a rewrite: %q", got)
	}

	// Nothing that changes the set: the same text again, a touch, an
	// editor's files beside it.
	write(t, filepath.Join(dir, "web.yaml"), "image: alpine\ncommand: [two]\n")
	now := time.Now()
	if err := os.Chtimes(filepath.Join(dir, "web.yaml"), now, now); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{".web.yaml.swp", "4913", "web.yaml~", "#web.yaml#", "notes.txt"} {
		write(t, filepath.Join(dir, f), "garbage: [")
	}
	none(t, sets, 200*time.Millisecond)

	// Removed.
	if err := os.Remove(filepath.Join(dir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	if s := next(t, sets); len(s.Containers) != 0 || len(s.Errors) != 0 {
		t.Fatalf("after removal: %s", describe(s))
	}
}

// TestVimSave replays what vim does on :w (backupcopy=auto, with a swap
// file): the old file is renamed to a backup, a new one is written, the
// backup is deleted. The debounce must not let the moment without the
// file through.
func TestVimSave(t *testing.T) {
	dir, sets := watched(t, true, 200*time.Millisecond)
	web := filepath.Join(dir, "web.yaml")
	write(t, web, "image: alpine\ncommand: [old]\n")
	next(t, sets) // the initial set, or the first write
	for s := range drain(sets, 400*time.Millisecond) {
		if got := describe(s); got != "web=old" {
			t.Fatalf("set before saving: %q", got)
		}
	}
	write(t, filepath.Join(dir, ".web.yaml.swp"), "swap")
	write(t, filepath.Join(dir, "4913"), "")
	if err := os.Remove(filepath.Join(dir, "4913")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(web, web+"~"); err != nil {
		t.Fatal(err)
	}
	write(t, web, "image: alpine\ncommand: [new]\n")
	if err := os.Remove(web + "~"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, ".web.yaml.swp")); err != nil {
		t.Fatal(err)
	}
	if got := describe(next(t, sets)); got != "web=new" {
		t.Fatalf("after vim's save: %q", got)
	}
	none(t, sets, 400*time.Millisecond)
}

// drain returns the sets that come within d.
func drain(sets <-chan Set, d time.Duration) chan Set {
	out := make(chan Set, 100)
	deadline := time.After(d)
	for {
		select {
		case s := <-sets:
			out <- s
		case <-deadline:
			close(out)
			return out
		}
	}
}

func TestPartialWrite(t *testing.T) {
	dir, sets := watched(t, true, 20*time.Millisecond)
	next(t, sets)
	f, err := os.Create(filepath.Join(dir, "web.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("image: alpine\ncommand: [sleep,"); err != nil {
		t.Fatal(err)
	}
	s := next(t, sets)
	if len(s.Containers) != 0 || len(s.Errors) != 1 || !strings.Contains(s.Errors[0].Error(), "web.yaml") {
		t.Fatalf("half-written file: %s", describe(s))
	}
	if _, err := f.WriteString(" infinity]\n"); err != nil {
		t.Fatal(err)
	}
	if got := describe(next(t, sets)); got != "web=sleep infinity" {
		t.Fatalf("completed file: %q", got)
	}
}

func TestDirectoryComesAndGoes(t *testing.T) {
	dir, sets := watched(t, false, 20*time.Millisecond)
	if s := next(t, sets); len(s.Containers) != 0 || len(s.Errors) != 0 {
		t.Fatalf("initial set of a missing directory: %s", describe(s))
	}
	// Created, then filled.
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "a.yaml"), "image: alpine\n")
	if got := describe(next(t, sets)); got != "a=" {
		t.Fatalf("after creating the directory: %q", got)
	}
	write(t, filepath.Join(dir, "b.yaml"), "image: alpine\n")
	if got := describe(next(t, sets)); got != "a= b=" {
		t.Fatalf("after adding b: %q", got)
	}
	// Replaced by another directory renamed over it.
	other := dir + ".new"
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(other, "c.yaml"), "image: alpine\n")
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, dir); err != nil {
		t.Fatal(err)
	}
	if got := describe(next(t, sets)); got != "c=" {
		t.Fatalf("after replacing the directory: %q", got)
	}
	// The new directory is watched.
	write(t, filepath.Join(dir, "d.yaml"), "image: alpine\n")
	if got := describe(next(t, sets)); got != "c= d=" {
		t.Fatalf("after adding d: %q", got)
	}
	// Removed.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if s := next(t, sets); len(s.Containers) != 0 {
		t.Fatalf("after removing the directory: %s", describe(s))
	}
}

func TestRunNeedsParent(t *testing.T) {
	err := Run(context.Background(), Options{Dir: filepath.Join(t.TempDir(), "no", "containers")}, func(Set) {})
	if err == nil {
		t.Fatal("Run watched a directory whose parent is missing")
	}
}
