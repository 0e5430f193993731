package container

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// TestConfigFile: config.json is written once, by whichever comes first;
// after settle nothing writes it; concurrent writers wait for one write.
func TestConfigFile(t *testing.T) {
	spec := func(host string) *specs.Spec { return &specs.Spec{Version: specs.Version, Hostname: host} }
	for _, tc := range []struct {
		name     string
		do       func(f *configFile, path string) error
		wantHost string // "" when the file must not exist
	}{
		{"write", func(f *configFile, p string) error { return f.write(p, spec("first")) }, "first"},
		{"write twice: the first wins", func(f *configFile, p string) error {
			if err := f.write(p, spec("first")); err != nil {
				return err
			}
			return f.write(p, spec("second"))
		}, "first"},
		{"settle, then write: nothing", func(f *configFile, p string) error {
			f.settle()
			return f.write(p, spec("late"))
		}, ""},
		{"write, then settle: kept", func(f *configFile, p string) error {
			err := f.write(p, spec("first"))
			f.settle()
			return err
		}, "first"},
		{"concurrent writers", func(f *configFile, p string) error {
			var wg sync.WaitGroup
			errs := make([]error, 8)
			for i := range errs {
				wg.Go(func() { errs[i] = f.write(p, spec("same")) })
			}
			wg.Wait()
			return errors.Join(errs...)
		}, "same"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.json")
			var f configFile
			if err := tc.do(&f, path); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if tc.wantHost == "" {
				if !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("config.json written after settle (%v)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got specs.Spec
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if got.Hostname != tc.wantHost {
				t.Errorf("hostname %q, want %q", got.Hostname, tc.wantHost)
			}
		})
	}
	t.Run("unwritable", func(t *testing.T) {
		var f configFile
		if err := f.write(filepath.Join(t.TempDir(), "missing", "config.json"), spec("x")); err == nil {
			t.Error("no error for a directory that does not exist")
		}
	})
}

// TestConfigJSONAfterStart: a started container's config.json appears in
// the background and holds its spec; a container created again under the
// same name has no config.json of the earlier one before it runs.
func TestConfigJSONAfterStart(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	m := &manifest.Container{Name: "cfg", Command: []string{"sleep"}, Hostname: "first"}
	c := e.start(t, m, img)
	path := c.l.config
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("config.json after start: %v", err)
	}
	var got specs.Spec
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Hostname != "first" || !slices.Equal(got.Process.Args, c.Spec().Process.Args) {
		t.Errorf("config.json: hostname %q args %q", got.Hostname, got.Process.Args)
	}
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	m2 := &manifest.Container{Name: "cfg", Command: []string{"sleep"}, Hostname: "second"}
	c2, err := e.rt.Create(context.Background(), m2, img)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Destroy()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the earlier container's config.json is still there after Create (%v)", err)
	}
	if b, err := os.ReadFile(c2.ConfigPath()); err != nil || !strings.Contains(string(b), `"hostname": "second"`) {
		t.Errorf("ConfigPath did not write the new spec: %v %.200s", err, b)
	}
}
