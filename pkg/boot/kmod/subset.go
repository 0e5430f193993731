package kmod

import (
	"bytes"
	"fmt"
	"strings"
)

// Subset returns an index restricted to the named modules and their hard
// dependencies: only their modules.dep lines, every modules.alias line of a
// kept module (aliases are what coldplug matches), and the softdep lines of
// kept modules. Built-in modules and built-in aliases are kept whole. Names
// that are not loadable modules of ix are ignored. The result reads module
// files from the same directory as ix.
func (ix *Index) Subset(names []string) *Index {
	keep := map[string]bool{}
	var add func(string)
	add = func(name string) {
		m, ok := ix.mods[Normalize(name)]
		if !ok || keep[m.Name] {
			return
		}
		keep[m.Name] = true
		for _, d := range m.Deps {
			add(d)
		}
	}
	for _, n := range names {
		add(n)
	}

	sub := &Index{
		dir:            ix.dir,
		mods:           map[string]*Module{},
		softdeps:       map[string]*SoftDep{},
		aliases:        newAliasTable(),
		builtin:        ix.builtin,
		builtinAliases: ix.builtinAliases,
	}
	for _, m := range ix.order {
		if keep[m.Name] {
			sub.mods[m.Name] = m
			sub.order = append(sub.order, m)
		}
	}
	for _, a := range ix.aliases.list {
		if keep[a.module] {
			sub.aliases.add(a.raw, a.module)
		}
	}
	sub.aliases.build()
	for _, name := range ix.softKeys {
		if keep[name] {
			sub.softdeps[name] = ix.softdeps[name]
			sub.softKeys = append(sub.softKeys, name)
		}
	}
	return sub
}

// Encode renders one of the index's text files (DepFile, AliasFile or
// SoftdepFile) in depmod's format, so that Open reads back the same index.
// It is how a trimmed index (see Subset) is written into an initramfs.
// modules.builtin is not re-encoded: copy the original.
func (ix *Index) Encode(name string) ([]byte, error) {
	var b bytes.Buffer
	switch name {
	case DepFile:
		for _, m := range ix.order {
			b.WriteString(m.Path)
			b.WriteByte(':')
			for _, d := range m.depPaths {
				b.WriteByte(' ')
				b.WriteString(d)
			}
			b.WriteByte('\n')
		}
	case AliasFile:
		b.WriteString("# Aliases extracted from modules themselves.\n")
		for _, a := range ix.aliases.list {
			fmt.Fprintf(&b, "alias %s %s\n", a.raw, a.module)
		}
	case SoftdepFile:
		b.WriteString("# Soft dependencies extracted from modules themselves.\n")
		for _, name := range ix.softKeys {
			sd := ix.softdeps[name]
			if len(sd.Pre) == 0 && len(sd.Post) == 0 {
				continue
			}
			b.WriteString("softdep ")
			b.WriteString(name)
			if len(sd.Pre) > 0 {
				b.WriteString(" pre: ")
				b.WriteString(strings.Join(sd.Pre, " "))
			}
			if len(sd.Post) > 0 {
				b.WriteString(" post: ")
				b.WriteString(strings.Join(sd.Post, " "))
			}
			b.WriteByte('\n')
		}
	default:
		return nil, fmt.Errorf("encode %s: not an index file kmod writes", name)
	}
	return b.Bytes(), nil
}
