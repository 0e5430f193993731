// Package kmod reads a kernel's module index (/lib/modules/VERSION),
// resolves module names and aliases to the modules to load and their order,
// loads them into the kernel, and coldplugs the devices found in sysfs.
//
// It replaces modprobe in an initramfs that has none. The index is read from
// the text files depmod writes (modules.dep, modules.alias, modules.softdep,
// modules.builtin, and modules.builtin.modinfo when present), once, into
// memory; the binary .bin variants are not used.
//
// Resolution follows libkmod's rules:
//
//   - a request is looked up as a module name first ("-" and "_" are the same
//     character in names, as in the kernel), then as an alias matched with
//     fnmatch(3) semantics against every pattern of modules.alias (all
//     matching modules are taken, in file order), then as a built-in module
//     name or built-in alias;
//   - a module's softdep "pre:" modules come before it, then its hard
//     dependencies (modules.dep, loaded last-listed first), then the module,
//     then its softdep "post:" modules; softdep names go through the same
//     lookup, so "softdep ext4 pre: crypto-crc32c" pulls in crc32c_generic
//     (and crc32c_intel) through modules.alias;
//   - built-in modules need no loading and never appear in a load order;
//   - a dependency cycle is broken where it closes instead of recursing;
//   - a name that is none of the above is an [UnknownModuleError], which
//     callers usually report as a warning.
//
// A [Loader] loads a resolved closure with finit_module(2) (plain .ko) or
// init_module(2) with the image decompressed in Go (.ko.xz, .ko.zst,
// .ko.gz); the kernel calls are behind the [Kernel] interface so tests never
// touch the host kernel. [Loader.Coldplug] walks /sys/devices for modalias
// files, loads the modules whose aliases match, and repeats until no new
// device shows up.
package kmod

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Names of the index files Open reads, relative to the index directory.
const (
	DepFile            = "modules.dep"
	AliasFile          = "modules.alias"
	SoftdepFile        = "modules.softdep"
	BuiltinFile        = "modules.builtin"
	BuiltinModinfoFile = "modules.builtin.modinfo"
)

// ErrUnknownModule is matched (with errors.Is) by every error reporting a
// name that is neither a module, an alias nor a built-in module.
var ErrUnknownModule = errors.New("unknown module")

// UnknownModuleError reports a requested name that the index does not know.
type UnknownModuleError struct {
	// Name is the name or alias as requested.
	Name string
	// Dir is the index directory that was searched.
	Dir string
}

// Error implements error.
func (e *UnknownModuleError) Error() string {
	return fmt.Sprintf("module %q not found in %s", e.Name, e.Dir)
}

// Unwrap returns ErrUnknownModule.
func (e *UnknownModuleError) Unwrap() error { return ErrUnknownModule }

// Module is one loadable module of the index.
type Module struct {
	// Name is the normalised module name ("virtio_rng" for virtio-rng.ko).
	Name string
	// Path is the module file relative to the index directory, as listed
	// in modules.dep (e.g. "kernel/drivers/net/virtio_net.ko").
	Path string
	// Deps are the normalised names of the hard dependencies, as listed in
	// modules.dep (the last one is loaded first).
	Deps []string

	depPaths []string
}

// SoftDep holds the soft dependencies of one module as modules.softdep lists
// them: names or aliases, resolved only when the module is resolved.
type SoftDep struct {
	// Pre are loaded before the module.
	Pre []string
	// Post are loaded after the module.
	Post []string
}

// Index is a parsed module index directory. It is read-only after Open and
// safe for concurrent use.
type Index struct {
	dir      string
	mods     map[string]*Module
	order    []*Module
	softdeps map[string]*SoftDep
	softKeys []string // modules with softdeps, in file order
	aliases  *aliasTable
	builtin  map[string]bool
	// builtinAliases are the built-in modules' aliases from
	// modules.builtin.modinfo; they only satisfy lookups.
	builtinAliases *aliasTable
}

// Normalize returns a module name in the kernel's spelling: "-" becomes "_".
func Normalize(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// normalizeAlias applies libkmod's alias normalisation: "-" becomes "_"
// except inside bracket expressions, where "-" denotes a range.
func normalizeAlias(s string) string {
	if strings.IndexByte(s, '-') < 0 {
		return s
	}
	b := []byte(s)
	inBracket := false
	for i, c := range b {
		switch {
		case inBracket:
			if c == ']' {
				inBracket = false
			}
		case c == '[':
			inBracket = true
		case c == '-':
			b[i] = '_'
		}
	}
	return string(b)
}

// moduleName derives the normalised module name from a module file path.
func moduleName(p string) string {
	base := path.Base(p)
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(base, ext) {
			base = strings.TrimSuffix(base, ext)
			break
		}
	}
	return Normalize(base)
}

// Open parses the module index in dir (a /lib/modules/VERSION directory).
// modules.dep is required; the other files are optional and count as empty
// when missing.
func Open(dir string) (*Index, error) {
	ix := &Index{
		dir:            dir,
		mods:           map[string]*Module{},
		softdeps:       map[string]*SoftDep{},
		aliases:        newAliasTable(),
		builtin:        map[string]bool{},
		builtinAliases: newAliasTable(),
	}
	if err := ix.readFile(DepFile, true, ix.parseDep); err != nil {
		return nil, err
	}
	if err := ix.readFile(AliasFile, false, ix.parseAlias); err != nil {
		return nil, err
	}
	if err := ix.readFile(SoftdepFile, false, ix.parseSoftdep); err != nil {
		return nil, err
	}
	if err := ix.readFile(BuiltinFile, false, ix.parseBuiltin); err != nil {
		return nil, err
	}
	if err := ix.readFile(BuiltinModinfoFile, false, ix.parseBuiltinModinfo); err != nil {
		return nil, err
	}
	ix.aliases.build()
	ix.builtinAliases.build()
	return ix, nil
}

func (ix *Index) readFile(name string, required bool, parse func(data []byte) error) error {
	p := filepath.Join(ix.dir, name)
	data, err := os.ReadFile(p)
	if err != nil {
		if !required && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err // *PathError already names the operation and the file
	}
	if err := parse(data); err != nil {
		return fmt.Errorf("parse %s: %w", p, err)
	}
	return nil
}

// eachLine calls fn with every non-empty, non-comment line and its number.
func eachLine(data []byte, fn func(n int, line string) error) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (ix *Index) parseDep(data []byte) error {
	err := eachLine(data, func(n int, line string) error {
		p, rest, ok := strings.Cut(line, ":")
		if !ok || p == "" {
			return fmt.Errorf("line %d: want \"PATH: DEPS\", got %q", n, line)
		}
		m := &Module{Name: moduleName(p), Path: p}
		for _, d := range strings.Fields(rest) {
			m.depPaths = append(m.depPaths, d)
			m.Deps = append(m.Deps, moduleName(d))
		}
		if _, dup := ix.mods[m.Name]; dup {
			// depmod never writes a module twice; keep the first, as
			// libkmod does.
			return nil
		}
		ix.mods[m.Name] = m
		ix.order = append(ix.order, m)
		return nil
	})
	if err != nil {
		return err
	}
	// A dependency without a line of its own still is a module to load.
	for _, m := range ix.order {
		for i, d := range m.Deps {
			if _, ok := ix.mods[d]; !ok {
				dm := &Module{Name: d, Path: m.depPaths[i]}
				ix.mods[d] = dm
				ix.order = append(ix.order, dm)
			}
		}
	}
	return nil
}

func (ix *Index) parseAlias(data []byte) error {
	return eachLine(data, func(n int, line string) error {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" {
			return fmt.Errorf("line %d: want \"alias PATTERN MODULE\", got %q", n, line)
		}
		ix.aliases.add(f[1], Normalize(f[2]))
		return nil
	})
}

func (ix *Index) parseSoftdep(data []byte) error {
	return eachLine(data, func(n int, line string) error {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "softdep" {
			return fmt.Errorf("line %d: want \"softdep MODULE pre: ... post: ...\", got %q", n, line)
		}
		name := Normalize(f[1])
		sd := ix.softdeps[name]
		if sd == nil {
			sd = &SoftDep{}
			ix.softdeps[name] = sd
			ix.softKeys = append(ix.softKeys, name)
		}
		var dst *[]string // nil before the first "pre:"/"post:": libkmod ignores such words
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				dst = &sd.Pre
			case "post:":
				dst = &sd.Post
			default:
				if dst != nil {
					*dst = append(*dst, w)
				}
			}
		}
		return nil
	})
}

func (ix *Index) parseBuiltin(data []byte) error {
	return eachLine(data, func(_ int, line string) error {
		ix.builtin[moduleName(line)] = true
		return nil
	})
}

// parseBuiltinModinfo reads the NUL-separated "module.key=value" records of
// modules.builtin.modinfo, keeping module names and aliases.
func (ix *Index) parseBuiltinModinfo(data []byte) error {
	for _, rec := range bytes.Split(data, []byte{0}) {
		mod, kv, ok := strings.Cut(string(rec), ".")
		if !ok || mod == "" {
			continue
		}
		name := Normalize(mod)
		ix.builtin[name] = true
		if v, ok := strings.CutPrefix(kv, "alias="); ok && v != "" {
			ix.builtinAliases.add(v, name)
		}
	}
	return nil
}

// Dir returns the index directory Open read.
func (ix *Index) Dir() string { return ix.dir }

// Modules returns every loadable module in modules.dep order.
func (ix *Index) Modules() []*Module { return append([]*Module(nil), ix.order...) }

// Module returns the loadable module with the given name ("-" and "_" are
// equivalent).
func (ix *Index) Module(name string) (*Module, bool) {
	m, ok := ix.mods[Normalize(name)]
	return m, ok
}

// SoftDeps returns the soft dependencies of the named module, or nil.
func (ix *Index) SoftDeps(name string) *SoftDep {
	return ix.softdeps[Normalize(name)]
}

// IsBuiltin reports whether the named module is built into the kernel.
func (ix *Index) IsBuiltin(name string) bool { return ix.builtin[Normalize(name)] }

// MatchAlias returns the loadable modules having an alias pattern that
// matches s (a device's modalias or any alias), in modules.alias order,
// each once.
func (ix *Index) MatchAlias(s string) []*Module {
	var out []*Module
	for _, name := range ix.aliases.match(normalizeAlias(s)) {
		if m, ok := ix.mods[name]; ok {
			out = append(out, m)
		}
	}
	return out
}

// Lookup resolves one module name or alias to the loadable modules it names,
// without their dependencies. An empty result with a nil error means the
// name is satisfied by the kernel itself (a built-in module or alias). A
// name that matches nothing yields an *UnknownModuleError.
func (ix *Index) Lookup(name string) ([]*Module, error) {
	if m, ok := ix.mods[Normalize(name)]; ok {
		return []*Module{m}, nil
	}
	if mods := ix.MatchAlias(name); len(mods) > 0 {
		return mods, nil
	}
	if ix.builtin[Normalize(name)] || len(ix.builtinAliases.match(normalizeAlias(name))) > 0 {
		return nil, nil
	}
	return nil, &UnknownModuleError{Name: name, Dir: ix.dir}
}
