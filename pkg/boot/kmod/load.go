package kmod

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// Kernel is the kernel's module loading interface. SyscallKernel is the real
// one; tests substitute a fake so nothing is loaded into the host kernel.
// Both methods return unix.EEXIST when the module is already loaded.
type Kernel interface {
	// FinitModule loads the uncompressed module file f, as finit_module(2).
	FinitModule(f *os.File, params string) error
	// InitModule loads an uncompressed module image, as init_module(2).
	InitModule(image []byte, params string) error
}

// SyscallKernel loads modules with the finit_module(2) and init_module(2)
// system calls.
type SyscallKernel struct{}

// FinitModule calls finit_module(2) on f.
func (SyscallKernel) FinitModule(f *os.File, params string) error {
	return unix.FinitModule(int(f.Fd()), params, 0)
}

// InitModule calls init_module(2) with image.
func (SyscallKernel) InitModule(image []byte, params string) error {
	return unix.InitModule(image, params)
}

// Status is the outcome of loading one module.
type Status int

const (
	// Loaded means the module was inserted by this call.
	Loaded Status = iota
	// AlreadyLoaded means the kernel had the module already.
	AlreadyLoaded
	// Builtin means the requested name is built into the kernel.
	Builtin
	// Unknown means the requested name is not in the index.
	Unknown
	// Failed means reading or inserting the module failed, or one of its
	// hard dependencies did.
	Failed
)

// String returns the status as a lower-case word.
func (s Status) String() string {
	switch s {
	case Loaded:
		return "loaded"
	case AlreadyLoaded:
		return "already loaded"
	case Builtin:
		return "builtin"
	case Unknown:
		return "unknown"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Result reports what happened to one module or requested name.
type Result struct {
	// Name is the module name, or the requested name for Builtin and
	// Unknown results.
	Name string
	// Status is the outcome.
	Status Status
	// Err is set for Unknown and Failed results; it names the module and
	// file.
	Err error
	// Duration is the time spent reading and inserting the module.
	Duration time.Duration
}

// ModuleError is the error of a Failed or Unknown Result.
type ModuleError struct {
	// Module is the module (or requested) name.
	Module string
	// Err is the cause.
	Err error
}

// Error implements error.
func (e *ModuleError) Error() string { return "kmod: " + e.Module + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *ModuleError) Unwrap() error { return e.Err }

// Loader loads modules of an Index into the kernel, remembering what is
// loaded. Its methods are safe for concurrent use (they serialise). Set the
// exported fields before the first call; a Loader must not be copied after
// first use.
type Loader struct {
	// Index is the module index to resolve and load from.
	Index *Index
	// Kernel performs the insertion; nil means SyscallKernel.
	Kernel Kernel
	// Log receives "kmod: loaded NAME" at info level for every module
	// inserted, and failures at warn level; nil discards.
	Log *slog.Logger
	// ProcModules is the path listing loaded modules, read once on first
	// use; "" means /proc/modules. A missing file counts as empty.
	ProcModules string
	// Params holds module parameters ("opt=val opt2=val") by normalised
	// module name.
	Params map[string]string
	// Uevents subscribes to the kernel's device events for Coldplug; nil
	// means OpenKernelUevents. When it fails, Coldplug walks sysfs again
	// after every round of loads instead.
	Uevents func() (UeventSource, error)

	mu     sync.Mutex
	loaded map[string]bool // nil until /proc/modules is read
	failed map[string]error
}

// NewLoader returns a Loader using the real system calls.
func NewLoader(ix *Index, log *slog.Logger) *Loader {
	return &Loader{Index: ix, Log: log}
}

func (l *Loader) log() *slog.Logger {
	if l.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Log
}

func (l *Loader) kernel() Kernel {
	if l.Kernel == nil {
		return SyscallKernel{}
	}
	return l.Kernel
}

// initState reads /proc/modules once. Called with l.mu held.
func (l *Loader) initState() {
	if l.loaded != nil {
		return
	}
	l.loaded = map[string]bool{}
	l.failed = map[string]error{}
	p := l.ProcModules
	if p == "" {
		p = "/proc/modules"
	}
	data, err := os.ReadFile(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			l.log().Warn("kmod: cannot list loaded modules", "path", p, "err", err)
		}
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			l.loaded[Normalize(f[0])] = true
		}
	}
}

// IsLoaded reports whether the named module is known to be loaded (it was
// in /proc/modules or this Loader loaded it).
func (l *Loader) IsLoaded(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.initState()
	return l.loaded[Normalize(name)]
}

// Load resolves the given names or aliases (see Index.Resolve) and loads the
// closure in order. Nothing stops it but ctx: an unknown name or a failed
// module is reported and the rest still load; a module whose hard
// dependency failed is not attempted and fails too.
//
// It returns one Result per requested name that is built in or unknown and
// per module of the closure, in load order, and an error joining the
// *ModuleError of every Unknown and Failed result (and ctx's error if it
// ended the work), nil when everything is loaded.
func (l *Loader) Load(ctx context.Context, names ...string) ([]Result, error) {
	var results []Result
	var roots []*Module
	for _, n := range names {
		mods, err := l.Index.Lookup(n)
		switch {
		case err != nil:
			results = append(results, Result{Name: n, Status: Unknown, Err: &ModuleError{Module: n, Err: err}})
			l.log().Warn("kmod: unknown module "+n, "module", n)
		case len(mods) == 0:
			results = append(results, Result{Name: n, Status: Builtin})
		default:
			roots = append(roots, mods...)
		}
	}
	results = append(results, l.LoadModules(ctx, l.Index.Closure(roots...))...)
	return results, resultsError(ctx, results)
}

// LoadModules inserts mods in the given order (which must already be a
// load order, such as Index.Closure returns), skipping loaded ones, and
// returns one Result per module. It stops early only when ctx is done.
func (l *Loader) LoadModules(ctx context.Context, mods []*Module) []Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.initState()
	results := make([]Result, 0, len(mods))
	for _, m := range mods {
		if ctx.Err() != nil {
			break
		}
		results = append(results, l.loadOne(m))
	}
	return results
}

// loadOne loads m. Called with l.mu held.
func (l *Loader) loadOne(m *Module) Result {
	if l.loaded[m.Name] {
		return Result{Name: m.Name, Status: AlreadyLoaded}
	}
	if err, ok := l.failed[m.Name]; ok {
		return Result{Name: m.Name, Status: Failed, Err: &ModuleError{Module: m.Name, Err: err}}
	}
	for _, d := range m.Deps {
		if err, ok := l.failed[d]; ok {
			err = fmt.Errorf("dependency %s not loaded: %w", d, err)
			return l.fail(m, err, 0)
		}
	}
	start := time.Now()
	err := l.insert(m)
	d := time.Since(start)
	switch {
	case err == nil:
		l.loaded[m.Name] = true
		l.log().Info("kmod: loaded "+m.Name, "module", m.Name, "duration", d.Round(time.Microsecond))
		return Result{Name: m.Name, Status: Loaded, Duration: d}
	case errors.Is(err, unix.EEXIST):
		l.loaded[m.Name] = true
		l.log().Debug("kmod: already loaded "+m.Name, "module", m.Name)
		return Result{Name: m.Name, Status: AlreadyLoaded, Duration: d}
	default:
		return l.fail(m, err, d)
	}
}

func (l *Loader) fail(m *Module, err error, d time.Duration) Result {
	l.failed[m.Name] = err
	l.log().Warn("kmod: load "+m.Name+" failed", "module", m.Name, "err", err)
	return Result{Name: m.Name, Status: Failed, Err: &ModuleError{Module: m.Name, Err: err}, Duration: d}
}

// insert reads m's file and hands it to the kernel: the open file itself
// for a plain .ko (no copy), the decompressed image otherwise.
func (l *Loader) insert(m *Module) error {
	p := filepath.Join(l.Index.Dir(), m.Path)
	params := l.Params[m.Name]
	f, err := os.Open(p)
	if err != nil {
		return err // *PathError already names the operation and the file
	}
	defer f.Close()
	if compression(p) == "" {
		err := l.kernel().FinitModule(f, params)
		if !errors.Is(err, unix.ENOSYS) {
			if err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("finit_module %s: %w", p, err)
			}
			return err
		}
		// A kernel without finit_module: fall back to init_module.
	}
	image, err := decompress(f, p)
	if err != nil {
		return err
	}
	err = l.kernel().InitModule(image, params)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("init_module %s: %w", p, err)
	}
	return err
}

// compression returns the compression suffix of a module file name ("xz",
// "zst", "gz"), or "" for a plain .ko.
func compression(p string) string {
	switch {
	case strings.HasSuffix(p, ".ko.xz"):
		return "xz"
	case strings.HasSuffix(p, ".ko.zst"):
		return "zst"
	case strings.HasSuffix(p, ".ko.gz"):
		return "gz"
	}
	return ""
}

// decompress reads the module image from f (named p), decompressing it
// according to p's suffix.
func decompress(f *os.File, p string) ([]byte, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("seek %s: %w", p, err)
	}
	var r io.Reader
	switch compression(p) {
	case "":
		r = f
	case "xz":
		xr, err := xz.NewReader(bufio.NewReader(f))
		if err != nil {
			return nil, fmt.Errorf("xz %s: %w", p, err)
		}
		r = xr
	case "zst":
		zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd %s: %w", p, err)
		}
		defer zr.Close()
		r = zr
	case "gz":
		gr, err := gzip.NewReader(bufio.NewReader(f))
		if err != nil {
			return nil, fmt.Errorf("gzip %s: %w", p, err)
		}
		defer gr.Close()
		r = gr
	}
	image, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return image, nil
}

// resultsError joins the errors of Unknown and Failed results, and ctx's
// error if ctx is done.
func resultsError(ctx context.Context, results []Result) error {
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
