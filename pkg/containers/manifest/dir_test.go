package manifest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeDir writes files (name -> text) into a new directory.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func names(cs []*Container) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return strings.Join(out, ",")
}

func TestLoadDir(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string   // names of the containers loaded
		errs  []string // each "BASENAME:LINE: field F: message" prefix, in order
	}{
		{
			name: "skips non-manifests",
			files: map[string]string{
				"a.yaml": "image: x\n", "b.yml": "image: x\n",
				".hidden.yaml": "bad", ".#a.yaml": "bad", "a.yaml~": "bad", "#a.yaml#": "bad",
				"a.yaml.swp": "bad", "notes.txt": "bad", "sub.yaml/c.yaml": "bad",
			},
			want: "a,b",
		},
		{
			name:  "one bad file does not stop the others",
			files: map[string]string{"a.yaml": "image: x\n", "b.yaml": "image: x\nbogus: 1\n", "c.yaml": "image: x\n"},
			want:  "a,c",
			errs:  []string{"b.yaml:2: field bogus: unknown field"},
		},
		{
			name:  "duplicate names",
			files: map[string]string{"a.yaml": "image: x\n", "b.yaml": "image: x\nname: a\n", "c.yaml": "image: x\n"},
			want:  "c",
			errs: []string{
				"a.yaml: field name: container name a is also given by DIR/b.yaml",
				"b.yaml:2: field name: container name a is also given by DIR/a.yaml",
			},
		},
		{
			name: "missing dependency and cascade",
			files: map[string]string{
				"a.yaml": "image: x\ndepends_on: [b]\n",
				"b.yaml": "image: x\ndepends_on:\n  ghost: {condition: service_healthy}\n",
				"c.yaml": "image: x\ndepends_on:\n  ghost: {required: false}\n",
				"d.yaml": "image: x\nnetwork_mode: container:a\n",
			},
			want: "c",
			errs: []string{
				"a.yaml:2: field depends_on[0]: depends on b, but b is rejected (see DIR/b.yaml)",
				"b.yaml:3: field depends_on.ghost: depends on ghost, but no manifest defines ghost",
				"d.yaml:2: field network_mode: shares the network of a, but a is rejected (see DIR/a.yaml)",
			},
		},
		{
			name: "network-online is not a container",
			files: map[string]string{
				"a.yaml": "image: x\ndepends_on: [network-online, b]\n",
				"b.yaml": "image: x\ndepends_on:\n  network-online: {condition: service_started}\n",
				"c.yaml": "image: x\nnetwork_mode: container:network-online\n",
			},
			want: "a,b",
			errs: []string{"c.yaml:2: field network_mode: shares the network of network-online, but no manifest defines network-online"},
		},
		{
			name: "dependency on a bad file",
			files: map[string]string{
				"a.yaml": "image: x\ndepends_on: [b]\n",
				"b.yaml": "image: [x]\n",
			},
			errs: []string{
				"a.yaml:2: field depends_on[0]: depends on b, but b is rejected (see DIR/b.yaml)",
				"b.yaml:1: field image: expected a string",
			},
		},
		{
			name: "missing network container",
			files: map[string]string{
				"a.yaml": "image: x\nnetwork_mode: container:ghost\n",
			},
			errs: []string{"a.yaml:2: field network_mode: shares the network of ghost, but no manifest defines ghost"},
		},
		{
			name: "cycle",
			files: map[string]string{
				"a.yaml": "image: x\ndepends_on: [b]\n",
				"b.yaml": "image: x\n\ndepends_on: [c]\n",
				"c.yaml": "image: x\nnetwork_mode: container:a\n",
				"d.yaml": "image: x\ndepends_on: [a]\n",
				"e.yaml": "image: x\ndepends_on: [f]\n",
				"f.yaml": "image: x\n",
			},
			want: "e,f",
			errs: []string{
				"a.yaml:2: field depends_on[0]: dependency cycle: a -> b -> c -> a",
				"b.yaml:3: field depends_on[0]: dependency cycle: a -> b -> c -> a",
				"c.yaml:2: field network_mode: dependency cycle: a -> b -> c -> a",
				"d.yaml:2: field depends_on[0]: depends on a, but a is rejected (see DIR/a.yaml)",
			},
		},
		{
			name: "optional dependency in a cycle is still a cycle",
			files: map[string]string{
				"a.yaml": "image: x\ndepends_on:\n  b: {required: false}\n",
				"b.yaml": "image: x\ndepends_on: [a]\n",
			},
			errs: []string{
				"a.yaml:3: field depends_on.b: dependency cycle: a -> b -> a",
				"b.yaml:2: field depends_on[0]: dependency cycle: a -> b -> a",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeDir(t, tt.files)
			cs, errs := LoadDir(dir)
			if got := names(cs); got != tt.want {
				t.Errorf("loaded %q, want %q", got, tt.want)
			}
			var got []string
			for _, e := range errs {
				var me *Error
				if !errors.As(e, &me) {
					t.Errorf("error %T is not *Error: %v", e, e)
				}
				got = append(got, strings.TrimPrefix(strings.ReplaceAll(e.Error(), dir, "DIR"), "DIR/"))
			}
			if len(got) != len(tt.errs) {
				t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.errs, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.errs[i]) {
					t.Errorf("error %d:\n got %s\nwant %s...", i, got[i], tt.errs[i])
				}
			}
		})
	}
}

func TestLoadDirMissing(t *testing.T) {
	cs, errs := LoadDir(filepath.Join(t.TempDir(), "nope"))
	if len(cs) != 0 || len(errs) != 1 || !errors.Is(errs[0], fs.ErrNotExist) {
		t.Fatalf("LoadDir(missing) = %v, %v", cs, errs)
	}
}

func TestStartOrder(t *testing.T) {
	mk := func(name string, deps ...string) *Container {
		c := &Container{Name: name, DependsOn: map[string]Dependency{}}
		for _, d := range deps {
			if n, ok := strings.CutPrefix(d, "net:"); ok {
				c.NetworkMode = "container:" + n
				continue
			}
			c.DependsOn[d] = Dependency{Condition: ConditionStarted, Required: true}
		}
		return c
	}
	tests := []struct {
		name string
		cs   []*Container
		want string // waves separated by " | "
		err  string
	}{
		{name: "empty", want: ""},
		{name: "independent", cs: []*Container{mk("b"), mk("a")}, want: "a,b"},
		{
			name: "diamond and network",
			cs:   []*Container{mk("web", "api", "cache"), mk("api", "db"), mk("cache"), mk("db"), mk("sidecar", "net:web"), mk("outside", "ghost")},
			want: "cache,db,outside | api | web | sidecar",
		},
		{name: "cycle", cs: []*Container{mk("a", "b"), mk("b", "c"), mk("c", "a"), mk("d")}, err: "dependency cycle: a -> b -> c -> a"},
		{name: "self", cs: []*Container{mk("a", "a")}, err: "dependency cycle: a -> a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			waves, err := StartOrder(tt.cs)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var parts []string
			for _, w := range waves {
				parts = append(parts, names(w))
			}
			if got := strings.Join(parts, " | "); got != tt.want {
				t.Errorf("waves %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIsManifestName(t *testing.T) {
	for name, want := range map[string]bool{
		"web.yaml": true, "web.yml": true, "a.b.yaml": true,
		".web.yaml": false, ".#web.yaml": false, "web.yaml~": false, "#web.yaml#": false,
		"web.yaml.swp": false, ".web.yaml.swp": false, "web.json": false, ".yaml": false, "web": false,
	} {
		if got := IsManifestName(name); got != want {
			t.Errorf("IsManifestName(%q) = %v, want %v", name, got, want)
		}
	}
}
