package manifest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// IsManifestName reports whether a directory entry's name is a manifest:
// it ends in .yaml or .yml and is neither hidden (".x.yaml", Emacs's
// ".#x.yaml") nor an editor's leftover ("x.yaml~", "#x.yaml#", "x.swp").
func IsManifestName(name string) bool {
	ext := filepath.Ext(name)
	if ext != ".yaml" && ext != ".yml" {
		return false
	}
	base := strings.TrimSuffix(name, ext)
	return base != "" && !strings.HasPrefix(name, ".") && !strings.HasPrefix(name, "#") &&
		!strings.HasSuffix(name, "~")
}

// loaded is one good manifest and where its cross-file fields were
// written.
type loaded struct {
	c *Container
	d *decoder
}

// LoadDir loads every manifest in dir (see IsManifestName) and checks the
// rules between them. One bad file never stops the others: containers
// holds exactly the manifests without any problem, sorted by name, and
// errs has one *Error per problem, ordered by file and line. Rules across
// files, each reported on the file that breaks it:
//   - two files giving the same name: both are rejected, each error
//     naming the other file;
//   - depends_on naming a container that has no manifest, or whose
//     manifest is rejected (unless the dependency has required: false);
//     the pseudo-dependency network-online (NetworkOnline) is not a
//     container and needs no manifest;
//   - network_mode container:NAME naming such a container;
//   - dependency cycles ("dependency cycle: a -> b -> a"), every member
//     rejected.
//
// Rejections cascade: a container depending on a rejected one is
// rejected too. A missing dir is one error matching fs.ErrNotExist.
func LoadDir(dir string) (containers []*Container, errs []error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, []error{&Error{File: dir, Msg: err.Error(), Err: err}}
	}
	var all []*Error
	var good []loaded
	badNames := map[string]string{} // name a rejected file would give -> file
	for _, e := range ents {
		if !IsManifestName(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
			continue
		}
		c, d, perrs := loadFile(path)
		if len(perrs) > 0 {
			all = append(all, perrs...)
			badNames[strings.TrimSuffix(e.Name(), filepath.Ext(e.Name()))] = path
			continue
		}
		good = append(good, loaded{c, d})
	}
	valid, xerrs := crossFile(good, badNames)
	all = append(all, xerrs...)
	sortErrors(all)
	for _, e := range all {
		errs = append(errs, e)
	}
	return valid, errs
}

// loadFile is Load, keeping the decoder's positions.
func loadFile(path string) (*Container, *decoder, Errors) {
	data, err := readLimited(path)
	if err != nil {
		return nil, nil, Errors{{File: path, Msg: err.Error(), Err: err}}
	}
	return parse(path, data, filepath.Dir(path))
}

// crossFile applies the rules between manifests and returns the
// containers that pass them, sorted by name.
func crossFile(good []loaded, badNames map[string]string) ([]*Container, []*Error) {
	var errs []*Error
	byName := map[string][]loaded{}
	for _, l := range good {
		byName[l.c.Name] = append(byName[l.c.Name], l)
	}
	valid := map[string]loaded{}
	for name, ls := range byName {
		if len(ls) == 1 {
			valid[name] = ls[0]
			continue
		}
		for _, l := range ls {
			var others []string
			for _, o := range ls {
				if o.c.File != l.c.File {
					others = append(others, o.c.File)
				}
			}
			sort.Strings(others)
			errs = append(errs, nameError(l, fmt.Sprintf("container name %s is also given by %s", name, strings.Join(others, ", "))))
			badNames[name] = l.c.File
		}
	}
	for {
		errs = append(errs, missingRefs(valid, badNames)...)
		cerrs := cycles(valid, badNames)
		if len(cerrs) == 0 {
			break
		}
		errs = append(errs, cerrs...)
	}
	out := make([]*Container, 0, len(valid))
	for _, l := range valid {
		out = append(out, l.c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errs
}

// nameError places an error on a manifest's name (its name field, or the
// file itself when the name comes from the file name).
func nameError(l loaded, msg string) *Error {
	e := &Error{File: l.c.File, Field: "name", Msg: msg}
	if l.d.nameNode != nil {
		e.Line = l.d.nameNode.Line
	}
	return e
}

// missingRefs rejects, until nothing changes, every container whose
// required dependency or network container is not in valid.
func missingRefs(valid map[string]loaded, badNames map[string]string) []*Error {
	var errs []*Error
	why := func(name string) string {
		if f, ok := badNames[name]; ok {
			return fmt.Sprintf("%s is rejected (see %s)", name, f)
		}
		return fmt.Sprintf("no manifest defines %s", name)
	}
	for changed := true; changed; {
		changed = false
		for _, name := range slices.Sorted(maps.Keys(valid)) {
			l := valid[name]
			var these []*Error
			for _, dep := range slices.Sorted(maps.Keys(l.c.DependsOn)) {
				if _, ok := valid[dep]; ok || dep == NetworkOnline || !l.c.DependsOn[dep].Required {
					continue
				}
				p := l.d.placedDeps[dep]
				these = append(these, &Error{File: l.c.File, Line: p.node.Line, Field: p.field, Msg: "depends on " + dep + ", but " + why(dep)})
			}
			if net := l.c.NetworkContainer(); net != "" {
				if _, ok := valid[net]; !ok {
					these = append(these, &Error{File: l.c.File, Line: l.d.networkNode.Line, Field: "network_mode", Msg: "shares the network of " + net + ", but " + why(net)})
				}
			}
			if len(these) > 0 {
				errs = append(errs, these...)
				delete(valid, name)
				badNames[name] = l.c.File
				changed = true
			}
		}
	}
	return errs
}

// cycles rejects every container on a dependency cycle among valid.
func cycles(valid map[string]loaded, badNames map[string]string) []*Error {
	cs := make([]*Container, 0, len(valid))
	for _, l := range valid {
		cs = append(cs, l.c)
	}
	g := newGraph(cs)
	var errs []*Error
	for _, scc := range g.cycles() {
		path := g.cyclePath(scc)
		for _, name := range scc {
			l := valid[name]
			e := &Error{File: l.c.File, Msg: "dependency cycle: " + path}
			next := g.nextOnCycle(name, scc)
			if p, ok := l.d.placedDeps[next]; ok {
				e.Line, e.Field = p.node.Line, p.field
			} else if l.d.networkNode != nil {
				e.Line, e.Field = l.d.networkNode.Line, "network_mode"
			}
			errs = append(errs, e)
			delete(valid, name)
			badNames[name] = l.c.File
		}
	}
	return errs
}

// StartOrder sorts containers into waves: every container's dependencies
// (depends_on, and the container named by network_mode container:NAME)
// are in earlier waves, so the containers of one wave can start in
// parallel; the reverse order is a safe stop order. Dependencies on
// containers not in cs are ignored (LoadDir reports them). A cycle is an
// error naming it ("a -> b -> a"). Each wave is sorted by name.
func StartOrder(cs []*Container) ([][]*Container, error) {
	g := newGraph(cs)
	if cyc := g.cycles(); len(cyc) > 0 {
		return nil, fmt.Errorf("dependency cycle: %s", g.cyclePath(cyc[0]))
	}
	wave := map[string]int{}
	var depth func(name string) int
	depth = func(name string) int {
		if w, ok := wave[name]; ok {
			return w
		}
		w := 0
		for _, dep := range g.edges[name] {
			w = max(w, depth(dep)+1)
		}
		wave[name] = w
		return w
	}
	var waves [][]*Container
	for _, name := range g.names {
		w := depth(name)
		for len(waves) <= w {
			waves = append(waves, nil)
		}
		waves[w] = append(waves[w], g.byName[name])
	}
	return waves, nil
}

// graph is the "starts after" relation between containers.
type graph struct {
	names  []string              // sorted
	byName map[string]*Container // name -> container
	edges  map[string][]string   // name -> dependencies present in the graph, sorted
}

func newGraph(cs []*Container) *graph {
	g := &graph{byName: map[string]*Container{}, edges: map[string][]string{}}
	for _, c := range cs {
		g.byName[c.Name] = c
		g.names = append(g.names, c.Name)
	}
	sort.Strings(g.names)
	for _, c := range cs {
		deps := map[string]bool{}
		for dep := range c.DependsOn {
			deps[dep] = true
		}
		if net := c.NetworkContainer(); net != "" {
			deps[net] = true
		}
		for dep := range deps {
			if _, ok := g.byName[dep]; ok {
				g.edges[c.Name] = append(g.edges[c.Name], dep)
			}
		}
		sort.Strings(g.edges[c.Name])
	}
	return g
}

// cycles returns the strongly connected components that hold a cycle
// (Tarjan's algorithm), each sorted, in order of their first name.
func (g *graph) cycles() [][]string {
	index := map[string]int{}
	low := map[string]int{}
	onStack := map[string]bool{}
	var stack []string
	var out [][]string
	var visit func(v string)
	visit = func(v string) {
		index[v] = len(index)
		low[v] = index[v]
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range g.edges[v] {
			if _, seen := index[w]; !seen {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] != index[v] {
			return
		}
		var scc []string
		for {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[w] = false
			scc = append(scc, w)
			if w == v {
				break
			}
		}
		selfLoop := len(scc) == 1 && slices.Contains(g.edges[v], v)
		if len(scc) > 1 || selfLoop {
			sort.Strings(scc)
			out = append(out, scc)
		}
	}
	for _, v := range g.names {
		if _, seen := index[v]; !seen {
			visit(v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// cyclePath writes the shortest cycle through the first member of scc:
// "a -> b -> a".
func (g *graph) cyclePath(scc []string) string {
	start := scc[0]
	in := map[string]bool{}
	for _, n := range scc {
		in[n] = true
	}
	prev := map[string]string{}
	queue := []string{start}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range g.edges[v] {
			if !in[w] {
				continue
			}
			if w == start {
				path := []string{start}
				for u := v; u != start; u = prev[u] {
					path = append(path, u)
				}
				// path is start, v, ..., reversed after start.
				for i, j := 1, len(path)-1; i < j; i, j = i+1, j-1 {
					path[i], path[j] = path[j], path[i]
				}
				return strings.Join(append(path, start), " -> ")
			}
			if _, seen := prev[w]; !seen && w != start {
				prev[w] = v
				queue = append(queue, w)
			}
		}
	}
	return start
}

// nextOnCycle returns the first dependency of name inside scc.
func (g *graph) nextOnCycle(name string, scc []string) string {
	for _, dep := range g.edges[name] {
		if slices.Contains(scc, dep) {
			return dep
		}
	}
	return ""
}
