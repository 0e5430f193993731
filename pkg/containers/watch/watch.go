// Package watch reloads the container manifests when their directory
// (/etc/photon/containers) changes, for hot reload: the supervisor's
// Reconcile takes what it reports.
//
// Editors and tools change files in many small steps: vim renames the file
// to a backup and writes a new one, and writes swap files beside it; emacs
// writes lock files and autosaves; tools write a temporary file and
// rename it into place; a large copy arrives in several writes. So the
// watcher never looks at single events: any event in the directory (or
// the directory itself being created, removed or renamed) schedules a
// reload once the directory has been quiet for Options.Debounce, and a
// reload reads and checks the whole directory with manifest.LoadDir
// (which skips editors' temporary files). The result is handed on only
// when it differs from the last one, manifests compared by content: a
// swap file, a touch or a rewrite with the same text changes nothing. A
// file caught half-written is reported invalid (the supervisor then keeps
// the running container as it was) and is reloaded when the write
// completes.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// Set is a manifest directory as loaded: the valid containers, sorted by
// name, and one error per problem (*manifest.Error, ordered by file and
// line), as manifest.LoadDir gives them. A missing directory is the empty
// set.
type Set struct {
	Containers []*manifest.Container
	Errors     []error
}

// Options configure Run.
type Options struct {
	// Dir is the manifest directory (manifest.DefaultDir).
	Dir string
	// Debounce is how long the directory must be quiet before it is
	// reloaded (200ms). A directory that never stays quiet is reloaded
	// at least every 10 Debounces.
	Debounce time.Duration
	Log      *slog.Logger
}

// Run watches opts.Dir until ctx ends. It calls onChange with the loaded
// set once at the start, then after every change of the directory that
// changes the set; calls are sequential, from Run's goroutine. The
// directory may be missing, created, removed or replaced (renamed over)
// while watched; its parent must exist. A directory that cannot be read
// for another reason (permissions, I/O) is logged and the last set kept.
// Run returns nil when ctx ends, or an error when the watch cannot be set
// up.
func Run(ctx context.Context, opts Options, onChange func(Set)) error {
	if opts.Dir == "" {
		opts.Dir = manifest.DefaultDir
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 200 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return fmt.Errorf("watch %s: %w", opts.Dir, err)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	defer fw.Close()
	// The parent tells when the directory itself appears, goes or is
	// replaced.
	if parent := filepath.Dir(dir); parent != dir {
		if err := fw.Add(parent); err != nil {
			return fmt.Errorf("watch %s: %w", parent, err)
		}
	}
	w := &watcher{dir: dir, fw: fw, log: opts.Log, onChange: onChange}
	w.watchDir()
	w.reload()

	var (
		timer   = time.NewTimer(time.Hour)
		pending bool      // a reload is scheduled
		since   time.Time // the first event since the last reload
	)
	timer.Stop()
	defer timer.Stop()
	schedule := func() {
		now := time.Now()
		if !pending {
			pending, since = true, now
		}
		wait := min(opts.Debounce, since.Add(10*opts.Debounce).Sub(now))
		timer.Reset(max(wait, 0))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return fmt.Errorf("watch %s: the watcher closed", dir)
			}
			if ev.Name != dir && filepath.Dir(ev.Name) != dir {
				continue // something else in the parent directory
			}
			if ev.Name == dir && ev.Has(fsnotify.Create) {
				w.watchDir()
			}
			schedule()
		case err, ok := <-fw.Errors:
			if !ok {
				return fmt.Errorf("watch %s: the watcher closed", dir)
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn(fmt.Sprintf("containers: watching %s: %v", dir, err))
			}
			schedule() // events may have been lost: read the directory again
		case <-timer.C:
			pending = false
			w.reload()
		}
	}
}

// watcher is Run's state.
type watcher struct {
	dir      string
	fw       *fsnotify.Watcher
	log      *slog.Logger
	onChange func(Set)
	last     *Set // the last set handed on
}

// watchDir (re)starts watching the directory itself, which may have been
// created or replaced since the last watch.
func (w *watcher) watchDir() {
	_ = w.fw.Remove(w.dir) // a watch on a replaced directory is stale
	if err := w.fw.Add(w.dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.log.Warn(fmt.Sprintf("containers: cannot watch %s: %v", w.dir, err))
	}
}

// reload reads the directory and hands the set on if it changed.
func (w *watcher) reload() {
	set, ok := w.load()
	if !ok || (w.last != nil && same(*w.last, set)) {
		return
	}
	w.last = &set
	w.onChange(set)
}

// load reads the directory. It returns false when the directory itself
// cannot be read (and not because it is missing).
func (w *watcher) load() (Set, bool) {
	cs, errs := manifest.LoadDir(w.dir)
	if len(errs) == 1 {
		var me *manifest.Error
		if errors.As(errs[0], &me) && me.File == w.dir {
			if errors.Is(errs[0], fs.ErrNotExist) {
				return Set{}, true
			}
			w.log.Error(fmt.Sprintf("containers: %v; the containers are left as they are", errs[0]))
			return Set{}, false
		}
	}
	return Set{Containers: cs, Errors: errs}, true
}

// same compares two sets: the manifests by content, the errors by text.
func same(a, b Set) bool {
	if !slices.EqualFunc(a.Containers, b.Containers, func(x, y *manifest.Container) bool { return reflect.DeepEqual(x, y) }) {
		return false
	}
	return slices.EqualFunc(a.Errors, b.Errors, func(x, y error) bool { return x.Error() == y.Error() })
}
