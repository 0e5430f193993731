// Package dns keeps the machine's resolver configuration: one resolv.conf
// assembled from named sources (static configuration, the kernel command
// line, each DHCP lease), written atomically whenever it changes, and
// handed to whoever needs a copy (containers) together with a channel that
// tells them when it changed.
package dns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// DefaultPath is the resolv.conf photon-init writes.
const DefaultPath = "/run/photon/resolv.conf"

// EtcPath is where resolvers look.
const EtcPath = "/etc/resolv.conf"

// Config is one source's resolver configuration.
type Config struct {
	Nameservers []netip.Addr
	Search      []string
	Options     []string
}

// IsZero reports whether c says nothing.
func (c Config) IsZero() bool {
	return len(c.Nameservers) == 0 && len(c.Search) == 0 && len(c.Options) == 0
}

// source is a named Config with its rank.
type source struct {
	name string
	rank int
	cfg  Config
}

// Resolv assembles resolv.conf from sources and writes it to a file.
type Resolv struct {
	path string

	mu      sync.Mutex
	sources []source
	content []byte
	changed chan struct{} // closed and replaced at every change
}

// New returns a Resolv that writes path (DefaultPath when ""). Nothing is
// written until Write or Set is called.
func New(path string) *Resolv {
	if path == "" {
		path = DefaultPath
	}
	r := &Resolv{path: path, changed: make(chan struct{})}
	r.content = render(nil)
	return r
}

// Path returns the file written.
func (r *Resolv) Path() string { return r.path }

// Set replaces the configuration of the named source and rewrites the
// file if its content changed. Sources are ordered by rank, then name:
// lower ranks come first (static configuration before leases).
func (r *Resolv) Set(name string, rank int, c Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.IndexFunc(r.sources, func(s source) bool { return s.name == name })
	if i >= 0 {
		r.sources = slices.Delete(r.sources, i, i+1)
	}
	if !c.IsZero() {
		r.sources = append(r.sources, source{name: name, rank: rank, cfg: c})
		slices.SortStableFunc(r.sources, func(a, b source) int {
			if a.rank != b.rank {
				return a.rank - b.rank
			}
			return strings.Compare(a.name, b.name)
		})
	}
	return r.update()
}

// Remove drops the named source.
func (r *Resolv) Remove(name string) error { return r.Set(name, 0, Config{}) }

// Write writes the file with the current content, whether or not it
// changed (at start).
func (r *Resolv) Write() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return writeAtomic(r.path, r.content)
}

// Current returns the current content and a channel closed at the next
// change. A container's copy is kept up to date by rewriting it each time
// the channel is closed and asking again.
func (r *Resolv) Current() ([]byte, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.content), r.changed
}

// Merged returns the sources merged into one Config, duplicates dropped.
func (r *Resolv) Merged() Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return merge(r.sources)
}

// update renders the sources and writes the file if the content changed.
// Called with r.mu held.
func (r *Resolv) update() error {
	content := render(r.sources)
	if bytes.Equal(content, r.content) {
		return nil
	}
	r.content = content
	close(r.changed)
	r.changed = make(chan struct{})
	return writeAtomic(r.path, content)
}

// merge joins sources in order, dropping duplicates.
func merge(sources []source) Config {
	var m Config
	for _, s := range sources {
		for _, a := range s.cfg.Nameservers {
			if !slices.Contains(m.Nameservers, a) {
				m.Nameservers = append(m.Nameservers, a)
			}
		}
		for _, d := range s.cfg.Search {
			d = strings.TrimSuffix(d, ".")
			if d != "" && !slices.Contains(m.Search, d) {
				m.Search = append(m.Search, d)
			}
		}
		for _, o := range s.cfg.Options {
			if !slices.Contains(m.Options, o) {
				m.Options = append(m.Options, o)
			}
		}
	}
	return m
}

// render produces resolv.conf text. Resolvers read the first three name
// servers (glibc's and musl's MAXNS); all are written.
func render(sources []source) []byte {
	var b strings.Builder
	b.WriteString("# Written by photon-init from its configuration and DHCP leases; changes are overwritten.\n")
	var names []string
	for _, s := range sources {
		names = append(names, s.name)
	}
	if len(names) > 0 {
		fmt.Fprintf(&b, "# Sources: %s\n", strings.Join(names, ", "))
	}
	m := merge(sources)
	for _, a := range m.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", a.WithZone(""))
	}
	if len(m.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(m.Search, " "))
	}
	if len(m.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(m.Options, " "))
	}
	return []byte(b.String())
}

// writeAtomic writes data to path through a temporary file and rename, so
// that readers see the old file or the new one, never half of one.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Chmod(0o644), f.Close()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Follow keeps a copy of the content at path until ctx ends, rewriting it
// in place (same inode) at every change, so that a bind mount of that file
// into a container sees the new content. Errors go to onErr (may be nil)
// and the copy is tried again at the next change.
func (r *Resolv) Follow(ctx context.Context, path string, onErr func(error)) {
	for {
		content, changed := r.Current()
		if err := writeInPlace(path, content); err != nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// writeInPlace truncates and rewrites path, keeping its inode.
func writeInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("copy resolv.conf to %s: %w", path, err)
	}
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("copy resolv.conf to %s: %w", path, err)
	}
	return nil
}

// LinkEtc makes etc (normally EtcPath) a symbolic link to target unless it
// is the user's own file. The rule: a missing file, any symbolic link
// (dangling or pointing elsewhere, as distributions ship) and an empty
// regular file are replaced; a regular file with content is the user's and
// is left alone (replaced is false, with no error). The replacement is
// atomic (a new link renamed over the old name).
func LinkEtc(etc, target string) (replaced bool, err error) {
	fi, err := os.Lstat(etc)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, fmt.Errorf("link %s: %w", etc, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		if cur, _ := os.Readlink(etc); cur == target {
			return true, nil
		}
	case fi.Mode().IsRegular() && fi.Size() == 0:
	default:
		return false, nil
	}
	tmp := filepath.Join(filepath.Dir(etc), "."+filepath.Base(etc)+".photon-init")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return false, fmt.Errorf("link %s to %s: %w", etc, target, err)
	}
	if err := os.Rename(tmp, etc); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("link %s to %s: %w", etc, target, err)
	}
	return true, nil
}
