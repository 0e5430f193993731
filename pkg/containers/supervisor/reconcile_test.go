package supervisor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

func TestReconcile(t *testing.T) {
	s, rt, _ := newTest(t, Options{})
	ctx := context.Background()
	db := ctr("db", "img", nil, nil)
	app := ctr("app", "img", nil, map[string]manifest.Dependency{"db": dep(manifest.ConditionStarted)})
	cache := ctr("cache", "img", []string{"v1"}, nil)
	front := ctr("front", "img", nil, map[string]manifest.Dependency{"app": dep(manifest.ConditionStarted)})
	s.Start(ctx, []*manifest.Container{db, app, cache, front}, nil)
	for _, n := range []string{"db", "app", "cache", "front"} {
		waitState(t, s, n, StateRunning)
	}
	untouched := func(names ...string) {
		t.Helper()
		for _, n := range names {
			if c, st := rt.count("start "+n), rt.count("stop "+n); c != 1 || st != 0 {
				t.Errorf("%s was touched: %d starts, %d stops", n, c, st)
			}
		}
	}

	t.Run("add", func(t *testing.T) {
		// The same manifests as new values, plus a new one.
		s.Reconcile(ctx, []*manifest.Container{with(db, func(*manifest.Container) {}), app, cache, front, ctr("new", "img", nil, nil)}, nil)
		waitState(t, s, "new", StateRunning)
		untouched("db", "app", "cache", "front")
	})

	t.Run("change", func(t *testing.T) {
		cache2 := with(cache, func(m *manifest.Container) { m.Command = []string{"v2"} })
		s.Reconcile(ctx, []*manifest.Container{db, app, cache2, front, ctr("new", "img", nil, nil)}, nil)
		waitFor(t, s, "cache", "the new version", func(st Status) bool {
			return st.State == StateRunning && rt.count("start cache") == 2
		})
		if got := rt.latest(t, "cache").m.Command; len(got) != 1 || got[0] != "v2" {
			t.Errorf("cache runs %q, want the new command", got)
		}
		if rt.count("stop cache") != 1 {
			t.Errorf("the old cache was not stopped: %v", rt.Events())
		}
		untouched("db", "app", "front", "new")
		cache = cache2
	})

	t.Run("invalid edit", func(t *testing.T) {
		bad := Invalid{Name: "app", File: app.File, Err: errors.New("app.yaml:3: field imagee: unknown field\napp.yaml:4: more")}
		s.Reconcile(ctx, []*manifest.Container{db, cache, front, ctr("new", "img", nil, nil)}, []Invalid{bad})
		st := status(t, s, "app")
		if st.State != StateRunning || st.ManifestError != "app.yaml:3: field imagee: unknown field" {
			t.Errorf("app after an invalid edit: %s, manifest error %q", st.State, st.ManifestError)
		}
		var saw bool
		for _, ev := range s.Events() {
			saw = saw || (ev.Container == "app" && ev.From == StateRunning && ev.To == StateRunning &&
				ev.Reason == "manifest rejected, the container is left as it was: app.yaml:3: field imagee: unknown field")
		}
		if !saw {
			t.Errorf("no event for the rejected manifest")
		}
		// Fixed back to what runs: the error goes, the container stays.
		s.Reconcile(ctx, []*manifest.Container{db, app, cache, front, ctr("new", "img", nil, nil)}, nil)
		if st := status(t, s, "app"); st.ManifestError != "" {
			t.Errorf("manifest error kept: %q", st.ManifestError)
		}
		untouched("db", "app", "front", "new")
	})

	t.Run("invalid edit matched by file", func(t *testing.T) {
		// new.yaml sets name: other; once broken, the error names the file's
		// base name.
		other := with(ctr("other", "img", nil, nil), func(m *manifest.Container) { m.File = "/etc/photon/containers/new.yaml" })
		s.Reconcile(ctx, []*manifest.Container{db, app, cache, front, ctr("new", "img", nil, nil), other}, nil)
		waitState(t, s, "other", StateRunning)
		s.Reconcile(ctx, []*manifest.Container{db, app, cache, front, ctr("new", "img", nil, nil)},
			[]Invalid{{Name: "new", File: other.File, Err: errors.New("new.yaml:1: bad")}})
		if st := status(t, s, "other"); st.State != StateRunning || st.ManifestError != "new.yaml:1: bad" {
			t.Errorf("other: %s, %q", st.State, st.ManifestError)
		}
		if st := status(t, s, "new"); st.ManifestError != "" {
			t.Errorf("new took other's error: %q", st.ManifestError)
		}
	})

	t.Run("remove", func(t *testing.T) {
		// front and app go; front, depending on app, stops first.
		s.Reconcile(ctx, []*manifest.Container{db, cache, ctr("new", "img", nil, nil)}, nil)
		for _, st := range s.Status() {
			if st.Name == "app" || st.Name == "front" || st.Name == "other" {
				t.Errorf("%s is still listed: %+v", st.Name, st)
			}
		}
		ev := rt.Events()
		if i, j := indexOf(ev, "stop front"), indexOf(ev, "stop app"); i < 0 || j < 0 || i > j {
			t.Errorf("stop order: %v", ev)
		}
		var removed int
		for _, e := range s.Events() {
			if e.To == StateRemoved {
				removed++
			}
		}
		if removed != 3 {
			t.Errorf("%d removed events, want 3", removed)
		}
		untouched("db", "new")
	})
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func TestReconcileFixesAndRetries(t *testing.T) {
	s, _, _ := newTest(t, Options{})
	ctx := context.Background()
	db := ctr("db", "missing", nil, nil)
	app := ctr("app", "img", nil, map[string]manifest.Dependency{"db": dep(manifest.ConditionStarted)})
	web := ctr("web", "img", nil, map[string]manifest.Dependency{"app": dep(manifest.ConditionStarted)})
	s.Start(ctx, []*manifest.Container{db, app, web}, []Invalid{{Name: "typo", File: "typo.yaml", Err: errors.New("typo.yaml:1: bad")}})
	waitReason(t, s, "web", StateFailed, "dependency app: failed: dependency db: failed: image missing: no such image")

	// db's image is fixed: db starts, and so do app and web, which failed
	// because of it.
	db2 := with(db, func(m *manifest.Container) { m.Image = "img" })
	typo := ctr("typo", "img", nil, nil)
	s.Reconcile(ctx, []*manifest.Container{db2, app, web, typo}, nil)
	for _, n := range []string{"db", "app", "web", "typo"} {
		waitState(t, s, n, StateRunning)
	}
}

func TestReconcileRestartsDependents(t *testing.T) {
	s, rt, _ := newTest(t, Options{})
	ctx := context.Background()
	db := ctr("db", "img", []string{"v1"}, nil)
	app := ctr("app", "img", nil, map[string]manifest.Dependency{"db": {Condition: manifest.ConditionStarted, Required: true, Restart: true}})
	other := ctr("other", "img", nil, map[string]manifest.Dependency{"db": dep(manifest.ConditionStarted)})
	s.Start(ctx, []*manifest.Container{db, app, other}, nil)
	waitState(t, s, "app", StateRunning)
	waitState(t, s, "other", StateRunning)
	s.Reconcile(ctx, []*manifest.Container{with(db, func(m *manifest.Container) { m.Command = []string{"v2"} }), app, other}, nil)
	waitFor(t, s, "app", "a restart", func(st Status) bool { return st.State == StateRunning && rt.count("start app") == 2 })
	if rt.count("start other") != 1 {
		t.Errorf("other was restarted")
	}
}

func TestReconcileAfterStop(t *testing.T) {
	s, _, _ := newTest(t, Options{})
	s.Start(context.Background(), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	s.Reconcile(context.Background(), []*manifest.Container{ctr("late", "img", nil, nil)}, nil)
	if len(s.Status()) != 0 {
		t.Errorf("a container was added after Stop: %+v", s.Status())
	}
}

func TestSameManifest(t *testing.T) {
	a := &manifest.Container{Name: "a", File: "/x/a.yaml", Image: "i", Environment: []string{"A=1"}}
	tests := []struct {
		b    *manifest.Container
		same bool
	}{
		{with(a, func(*manifest.Container) {}), true},
		{with(a, func(m *manifest.Container) { m.File = "/x/renamed.yaml" }), true},
		{with(a, func(m *manifest.Container) { m.Environment = []string{"A=2"} }), false},
		{with(a, func(m *manifest.Container) { m.Command = []string{} }), false}, // reset vs unset
		{with(a, func(m *manifest.Container) { m.Healthcheck = &manifest.Healthcheck{Disable: true} }), false},
	}
	for i, tt := range tests {
		if got := sameManifest(a, tt.b); got != tt.same {
			t.Errorf("%d: %v, want %v", i, got, tt.same)
		}
	}
}

func TestInvalidFromErrors(t *testing.T) {
	errs := []error{
		&manifest.Error{File: "/m/web.yaml", Line: 3, Field: "image", Msg: "required"},
		&manifest.Error{File: "/m/db.yml", Line: 1, Msg: "bad"},
		&manifest.Error{File: "/m/web.yaml", Line: 7, Field: "ports[0]", Msg: "bad port"},
		errors.New("no file"),
	}
	got := InvalidFromErrors(errs)
	if len(got) != 2 || got[0].Name != "web" || got[0].File != "/m/web.yaml" || got[1].Name != "db" {
		t.Fatalf("%+v", got)
	}
	if want := "/m/web.yaml:3: field image: required\n/m/web.yaml:7: field ports[0]: bad port"; got[0].Err.Error() != want {
		t.Errorf("web's error %q, want %q", got[0].Err, want)
	}
	if firstLine(got[0].Err) != "/m/web.yaml:3: field image: required" {
		t.Errorf("reason %q", firstLine(got[0].Err))
	}
}
