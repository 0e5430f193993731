package kmod

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// fakeKernel records insertions instead of loading anything. fail maps a
// module image (its content) to the error to return; after runs after a
// successful insertion with the image, so tests can make devices appear.
type fakeKernel struct {
	mu     sync.Mutex
	calls  []string // "finit:IMAGE" or "init:IMAGE"
	fail   map[string]error
	finitE error // returned by every FinitModule when set (e.g. ENOSYS)
	after  func(image string)
}

func (k *fakeKernel) FinitModule(f *os.File, params string) error {
	if k.finitE != nil {
		return k.finitE
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	return k.record("finit", string(data), params)
}

func (k *fakeKernel) InitModule(image []byte, params string) error {
	return k.record("init", string(image), params)
}

func (k *fakeKernel) record(kind, image, params string) error {
	k.mu.Lock()
	call := kind + ":" + image
	if params != "" {
		call += " " + params
	}
	k.calls = append(k.calls, call)
	err := k.fail[image]
	k.mu.Unlock()
	if err == nil && k.after != nil {
		k.after(image)
	}
	return err
}

func (k *fakeKernel) Calls() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.calls)
}

// writeModuleTree writes an index dir whose module files contain their own
// module name (so fake insertions are recognisable), compressed according
// to each path's suffix.
func writeModuleTree(t *testing.T, dep string, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(rel string, data []byte) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(DepFile, []byte(dep))
	for name, content := range extra {
		write(name, []byte(content))
	}
	for _, line := range strings.Split(strings.TrimSpace(dep), "\n") {
		rel, _, _ := strings.Cut(line, ":")
		write(rel, compress(t, rel, []byte(moduleName(rel))))
	}
	return dir
}

func compress(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch compression(name) {
	case "":
		return data
	case "xz":
		w, err := xz.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case "zst":
		w, err := zstd.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case "gz":
		w := gzip.NewWriter(&b)
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if bytes.Equal(b.Bytes(), data) {
		t.Fatalf("%s: compression did nothing", name)
	}
	return b.Bytes()
}

func newTestLoader(t *testing.T, dir string, k Kernel) (*Loader, *bytes.Buffer) {
	t.Helper()
	ix, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	l := NewLoader(ix, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Kernel = k
	l.ProcModules = filepath.Join(dir, "proc-modules")
	// The host's own device events must not reach a test.
	l.Uevents = func() (UeventSource, error) { return nil, errors.New("no uevents in tests") }
	return l, &logs
}

func statuses(rs []Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name + "=" + r.Status.String()
	}
	return out
}

func TestLoadDecompresses(t *testing.T) {
	dir := writeModuleTree(t, `kernel/plain.ko:
kernel/x.ko.xz:
kernel/z.ko.zst:
kernel/g.ko.gz:
kernel/top.ko: kernel/plain.ko kernel/x.ko.xz kernel/z.ko.zst kernel/g.ko.gz
`, nil)
	k := &fakeKernel{}
	l, logs := newTestLoader(t, dir, k)
	l.Params = map[string]string{"z": "debug=1"}
	rs, err := l.Load(context.Background(), "top")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	wantCalls := []string{"init:g", "init:z debug=1", "init:x", "finit:plain", "finit:top"}
	if got := k.Calls(); !slices.Equal(got, wantCalls) {
		t.Errorf("kernel calls = %q, want %q", got, wantCalls)
	}
	if got := statuses(rs); !slices.Equal(got, []string{"g=loaded", "z=loaded", "x=loaded", "plain=loaded", "top=loaded"}) {
		t.Errorf("results = %q", got)
	}
	for _, m := range []string{"g", "z", "x", "plain", "top"} {
		if !strings.Contains(logs.String(), `msg="kmod: loaded `+m+`"`) {
			t.Errorf("log lacks \"kmod: loaded %s\":\n%s", m, logs)
		}
	}
	// A second Load inserts nothing.
	rs, err = l.Load(context.Background(), "top", "x")
	if err != nil || len(k.Calls()) != 5 {
		t.Errorf("second Load: calls %q, err %v", k.Calls(), err)
	}
	for _, r := range rs {
		if r.Status != AlreadyLoaded {
			t.Errorf("second Load: %s is %s, want already loaded", r.Name, r.Status)
		}
	}
}

func TestLoadFallsBackToInitModule(t *testing.T) {
	dir := writeModuleTree(t, "kernel/plain.ko:\n", nil)
	k := &fakeKernel{finitE: unix.ENOSYS}
	l, _ := newTestLoader(t, dir, k)
	if _, err := l.Load(context.Background(), "plain"); err != nil {
		t.Fatal(err)
	}
	if got := k.Calls(); !slices.Equal(got, []string{"init:plain"}) {
		t.Errorf("calls = %q, want init_module with the file's bytes", got)
	}
}

func TestLoadReportsAndContinues(t *testing.T) {
	dir := writeModuleTree(t, `kernel/base.ko:
kernel/broken.ko:
kernel/needs_broken.ko: kernel/broken.ko kernel/base.ko
kernel/fine.ko: kernel/base.ko
kernel/present.ko:
kernel/exists.ko:
kernel/gone.ko:
`, map[string]string{
		"proc-modules":  "present 16384 0 - Live 0x0000000000000000\nother 1 0 - Live 0x0\n",
		BuiltinFile:     "kernel/fs/inside.ko\n",
		SoftdepFile:     "softdep fine pre: no-such-softdep\n",
		"modules.alias": "alias fs-fine fine\n",
	})
	if err := os.Remove(filepath.Join(dir, "kernel/gone.ko")); err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{fail: map[string]error{
		"broken": unix.ENOEXEC,
		"exists": unix.EEXIST,
	}}
	l, logs := newTestLoader(t, dir, k)
	rs, err := l.Load(context.Background(), "needs_broken", "nope", "fs-fine", "present", "inside", "exists", "gone")
	want := []string{
		"nope=unknown", "inside=builtin",
		"base=loaded", "broken=failed", "needs_broken=failed", "fine=loaded",
		"present=already loaded", "exists=already loaded", "gone=failed",
	}
	if got := statuses(rs); !slices.Equal(got, want) {
		t.Errorf("results =\n%q\nwant\n%q", got, want)
	}
	if got := k.Calls(); !slices.Equal(got, []string{"finit:base", "finit:broken", "finit:fine", "finit:exists"}) {
		t.Errorf("calls = %q (needs_broken must not be tried, present not reloaded)", got)
	}
	if !errors.Is(err, ErrUnknownModule) || !errors.Is(err, unix.ENOEXEC) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want it to wrap unknown, ENOEXEC and not-exist", err)
	}
	for _, s := range []string{"broken.ko", "dependency broken", "gone.ko", `"nope"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("err %q lacks %q", err, s)
		}
	}
	if !strings.Contains(logs.String(), "kmod: load broken failed") {
		t.Errorf("no warning for broken in log:\n%s", logs)
	}
	if !l.IsLoaded("exists") || !l.IsLoaded("present") || l.IsLoaded("broken") {
		t.Error("IsLoaded disagrees with the results")
	}
}

func TestLoadStopsOnContext(t *testing.T) {
	dir := writeModuleTree(t, "kernel/a.ko:\nkernel/b.ko: kernel/a.ko\n", nil)
	ctx, cancel := context.WithCancel(context.Background())
	k := &fakeKernel{after: func(string) { cancel() }}
	l, _ := newTestLoader(t, dir, k)
	rs, err := l.Load(ctx, "b")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if got := statuses(rs); !slices.Equal(got, []string{"a=loaded"}) {
		t.Errorf("results = %q", got)
	}
}
