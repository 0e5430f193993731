package main

import (
	"fmt"
	"slices"

	"github.com/photon-init/photon-init/test/vm"
)

// namedTable is a table with its title.
type namedTable struct {
	title string
	t     *table
}

// tables renders every measured section and the targets.
func (b *bench) tables() []namedTable {
	var out []namedTable
	r := b.rep
	if r.Boot != nil {
		for _, m := range r.Boot.Machines {
			out = append(out, namedTable{fmt.Sprintf("Boot on %s (guest uptimes; wall from QEMU's start; median [min, max] of %d)", m, b.o.n), bootTable(r.Boot, m)})
		}
		if t := timelineTable(r.Boot); t != nil {
			out = append(out, namedTable{"Where photon-init's boot time goes (median start and duration of each timeline step, seconds)", t})
		}
	}
	if r.Size != nil {
		out = append(out, namedTable{"Size", sizeTable(r.Size)})
	}
	if r.Memory != nil {
		out = append(out, namedTable{fmt.Sprintf("Memory of photon-init (PID 1) after boot, %s, -m %d (median [min, max] of %d)", r.Memory.Machine, r.Memory.GuestMB, b.o.memN), memoryTable(r.Memory)})
		if len(r.Memory.Bisections) > 0 {
			out = append(out, namedTable{"Least guest memory (-m) with which the VM boots and answers HTTP 200, bisected in 8 MB steps", bisectTable(r.Memory)})
		}
	}
	if r.Unpack != nil {
		u := r.Unpack
		out = append(out, namedTable{fmt.Sprintf("Unpack: %d gzip layers, %d files, %s of files (%s of tar, %s gzip); %s (median [min, max] of %d)",
			u.Layers, u.Files, mib(u.FileBytes), mib(u.TarBytes), mib(u.GzipBytes), u.Conditions, b.o.unpackN), unpackTable(u)})
	}
	if r.Scale != nil {
		out = append(out, namedTable{fmt.Sprintf("Scale: %d containers, %d of them crash-looping (%d VM run(s))", r.Scale.Containers, r.Scale.Crashers, b.o.scaleN), scaleTable(r.Scale)})
	}
	t := newTable("target", "measured", "met")
	for _, tg := range r.Targets {
		t.add(tg.Name+": "+tg.Target, tg.Measured, tg.Met)
	}
	out = append(out, namedTable{"Targets (issue 8)", t})
	return out
}

// bootTable renders one machine's boot figures.
func bootTable(r *BootReport, m vm.Machine) *table {
	t := newTable("variant", "PID-1 exec", "init's first line", "entrypoint exec", "PID-1 exec → entrypoint", "first request", "QEMU start → HTTP 200 (wall)", "initramfs")
	for _, s := range r.Summary {
		if s.Machine != m {
			continue
		}
		t.add(s.Variant, s.InitExec.seconds(), s.SelfStart.seconds(), s.Entrypoint.seconds(), s.InitToEntrypoint.seconds(),
			s.FirstRequest.seconds(), s.Wall200.seconds(), mib(r.Images[s.Variant]))
	}
	return t
}

// timelineTable renders photon-init's steps, one column per machine and
// photon-init variant.
func timelineTable(r *BootReport) *table {
	type col struct {
		m vm.Machine
		v string
	}
	var cols []col
	var steps []string
	for _, s := range r.Steps {
		c := col{s.Machine, s.Variant}
		if !slices.Contains(cols, c) {
			cols = append(cols, c)
		}
		if !slices.Contains(steps, s.Step) {
			steps = append(steps, s.Step)
		}
	}
	if len(cols) == 0 {
		return nil
	}
	header := []string{"step"}
	for _, c := range cols {
		header = append(header, fmt.Sprintf("%s %s", c.m, c.v))
	}
	t := newTable(header...)
	for _, step := range steps {
		row := []string{step}
		for _, c := range cols {
			cell := "-"
			for _, s := range r.Steps {
				if s.Machine == c.m && s.Variant == c.v && s.Step == step && s.Seconds.N > 0 {
					cell = fmt.Sprintf("%.3f +%.3f", s.Start.Median, s.Seconds.Median)
				}
			}
			row = append(row, cell)
		}
		t.add(row...)
	}
	return t
}

// targets judges issue 8's targets on the report's figures.
func targets(r *Report) []Target {
	var out []Target
	if r.Boot != nil {
		get := func(m vm.Machine, v string) *BootSummary {
			for i := range r.Boot.Summary {
				if s := &r.Boot.Summary[i]; s.Machine == m && s.Variant == v {
					return s
				}
			}
			return nil
		}
		for _, m := range r.Boot.Machines {
			p, runc, floor := get(m, variantPhoton), get(m, variantRunc), get(m, variantFloor)
			if p != nil && runc != nil {
				x := ratio(p.InitToEntrypoint, runc.InitToEntrypoint)
				out = append(out, Target{
					Name: "PID-1 exec → entrypoint exec (" + string(m) + ")", Target: "≤ 0.5× busybox+runc",
					Measured: fmt.Sprintf("%s vs %s: %s", p.InitToEntrypoint.seconds(), runc.InitToEntrypoint.seconds(), fmtRatio(x)),
					Met:      met(x > 0, x <= 0.5),
				})
			}
			if p != nil && floor != nil {
				x := ratio(p.Wall200, floor.Wall200)
				out = append(out, Target{
					Name: "QEMU start → HTTP 200 (" + string(m) + ")", Target: "≤ 1.2× the floor",
					Measured: fmt.Sprintf("%s vs %s: %s", p.Wall200.seconds(), floor.Wall200.seconds(), fmtRatio(x)),
					Met:      met(x > 0, x <= 1.2),
				})
			}
		}
	}
	if s := r.Size; s != nil {
		out = append(out, Target{
			Name: "stripped static binary", Target: "≤ 12 MB",
			Measured: fmt.Sprintf("%d bytes = %.2f MB = %s", s.Binary, float64(s.Binary)/1e6, mib(s.Binary)),
			Met:      met(s.Binary > 0, s.Binary <= 12_000_000),
		})
	}
	if m := r.Memory; m != nil {
		for _, s := range m.Summary {
			if s.Containers == 50 {
				out = append(out, Target{
					Name: "photon-init RSS with 50 containers", Target: "≤ 20 MB",
					Measured: "VmRSS " + s.RSS.format("%.1f MiB") + ", VmHWM " + s.HWM.format("%.1f MiB"),
					Met:      met(s.RSS.N > 0, s.RSS.Median*(1<<20) <= 20e6),
				})
			}
		}
		if mb := m.demoMinMB(); mb > 0 {
			out = append(out, Target{
				Name: "demo boots and serves", Target: "in ≤ 96 MB of guest RAM",
				Measured: fmt.Sprintf("serves with -m %d", mb),
				Met:      met(true, mb <= 96),
			})
		}
	}
	if u := r.Unpack; u != nil {
		for _, s := range u.Summary {
			if s.Tool == toolPhoton {
				out = append(out, Target{
					Name: "unpack throughput", Target: "≥ 0.9× tar -x",
					Measured: fmt.Sprintf("%s vs tar: %s", s.MBps.format("%.0f MB/s"), fmtRatio(s.VsTar)),
					Met:      met(s.VsTar > 0, s.VsTar >= 0.9),
				})
			}
		}
	}
	return out
}

// met renders a target's verdict.
func met(measured, ok bool) string {
	switch {
	case !measured:
		return "n/a"
	case ok:
		return "yes"
	default:
		return "no"
	}
}

// shorten cuts s to n runes, marking the cut.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
