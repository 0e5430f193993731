package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
)

// testEntry is one entry of a test layer.
type testEntry struct {
	name     string
	typ      byte // tar.TypeReg when 0
	body     string
	link     string
	mode     int64
	uid, gid int
	size     int64 // declared size when body is "" (for bombs)
	pax      map[string]string
}

// makeTar builds an uncompressed layer tar.
func makeTar(t testing.TB, entries ...testEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Uid: e.uid, Gid: e.gid, PAXRecords: e.pax}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %s: %v", e.name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gzipBytes compresses b with gzip.
func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// memLayer is a layer held in memory; opens counts how often it is read.
func memLayer(blob, uncompressed []byte, opens *countMap) Layer {
	d := digest.FromBytes(blob).String()
	l := Layer{Digest: d, Size: int64(len(blob))}
	if uncompressed != nil {
		l.DiffID = digest.FromBytes(uncompressed).String()
	}
	l.Open = func(context.Context) (io.ReadCloser, error) {
		if opens != nil {
			opens.add(d)
		}
		return io.NopCloser(bytes.NewReader(blob)), nil
	}
	return l
}

// countMap counts events by key, safely across goroutines.
type countMap struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *countMap) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k]++
}

func (c *countMap) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func (c *countMap) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.m {
		n += v
	}
	return n
}

// memSource serves in-memory images as "oci:NAME" references; resolves
// counts Resolve calls.
type memSource struct {
	images   map[string]*Resolved
	resolves countMap
}

func (m *memSource) fn(_ context.Context, ref Reference, _ Platform) (Source, error) {
	return sourceFunc(func(context.Context) (*Resolved, error) {
		m.resolves.add(ref.Path)
		res, ok := m.images[ref.Path]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return res, nil
	}), nil
}

// sourceFunc adapts a function to Source.
type sourceFunc func(context.Context) (*Resolved, error)

func (f sourceFunc) Resolve(ctx context.Context) (*Resolved, error) { return f(ctx) }

// treeOf lists every path under dir (relative) with a type letter, sorted.
func treeOf(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// noLeftovers fails t when the store holds partial layers, temporary
// records or, with wantEmpty, any layer or record at all.
func noLeftovers(t testing.TB, root string, wantEmpty bool) {
	t.Helper()
	for _, p := range treeOf(t, root) {
		base := filepath.Base(p)
		switch {
		case strings.HasSuffix(p, ".partial") || strings.Contains(base, ".tmp-"):
			t.Errorf("leftover %s in the store", p)
		case wantEmpty && (strings.HasPrefix(p, "layers/") || strings.HasPrefix(p, "images/")):
			if fi, err := os.Lstat(filepath.Join(root, p)); err == nil && !fi.IsDir() || strings.Count(p, "/") >= 2 {
				t.Errorf("store not empty after a failure: %s", p)
			}
		}
	}
}

// runFilter pipes b through "tool -c".
func runFilter(tool string, b []byte) ([]byte, error) {
	cmd := exec.Command(tool, "-c")
	cmd.Stdin = bytes.NewReader(b)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w: %s", err, errb.String())
	}
	return out.Bytes(), nil
}
