package kmod

import (
	"errors"
	"fmt"
)

// Resolve returns the modules to load for the given names or aliases, with
// everything they need, in load order: for each module its softdep "pre:"
// modules, its hard dependencies, the module itself, then its softdep
// "post:" modules. Built-in modules are left out. Each module appears once.
//
// Names that cannot be found do not stop the others: the closure of the
// rest is returned together with an error joining one *UnknownModuleError
// per unknown name (errors.Is(err, ErrUnknownModule) holds). Unknown softdep
// names are skipped silently, as modprobe does.
func (ix *Index) Resolve(names ...string) ([]*Module, error) {
	var roots []*Module
	var errs []error
	for _, n := range names {
		mods, err := ix.Lookup(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		roots = append(roots, mods...)
	}
	return ix.Closure(roots...), errors.Join(errs...)
}

// Closure returns mods with all their hard and soft dependencies, in load
// order (see Resolve).
func (ix *Index) Closure(mods ...*Module) []*Module {
	r := resolver{ix: ix, state: map[string]visitState{}}
	for _, m := range mods {
		r.visit(m)
	}
	return r.out
}

type visitState uint8

const (
	unvisited visitState = iota
	visiting
	visited
)

type resolver struct {
	ix    *Index
	state map[string]visitState
	out   []*Module
}

func (r *resolver) visit(m *Module) {
	if r.state[m.Name] != unvisited {
		// visited: already in the order; visiting: a cycle, which is
		// broken here (the module is emitted when its first visit ends).
		return
	}
	r.state[m.Name] = visiting
	sd := r.ix.softdeps[m.Name]
	if sd != nil {
		for _, n := range sd.Pre {
			r.visitName(n)
		}
	}
	// modules.dep lists the dependency loaded last first.
	for i := len(m.Deps) - 1; i >= 0; i-- {
		if d, ok := r.ix.mods[m.Deps[i]]; ok {
			r.visit(d)
		}
	}
	r.state[m.Name] = visited
	r.out = append(r.out, m)
	if sd != nil {
		for _, n := range sd.Post {
			r.visitName(n)
		}
	}
}

func (r *resolver) visitName(name string) {
	mods, err := r.ix.Lookup(name)
	if err != nil {
		return
	}
	for _, m := range mods {
		r.visit(m)
	}
}

// String returns the module's name and path, for messages.
func (m *Module) String() string { return fmt.Sprintf("%s (%s)", m.Name, m.Path) }
