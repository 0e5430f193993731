// Command bench measures photon-init beside baselines, in the same run,
// and reports median, minimum and maximum over interleaved runs: a table
// on standard output, JSON (and the tables in Markdown) under out/bench/.
// "make bench" runs it; BENCH_N sets -n.
//
// Sections (-sections, default all):
//
//   - boot: on q35 and microvm, photon-init booting into a preloaded
//     container (the project's static HTTP server, network_mode host,
//     ip= static; also with DHCP and with a bridged container), beside the
//     floor (floor-init: mount /proc, load the NIC's modules, eth0 static,
//     exec the server) and busybox sh as /init with Debian's runc running
//     the server's OCI bundle. Guest uptime at PID 1's exec (the kernel's
//     "Run /init" line), at the init's first line, at the server's start
//     and at its first request; the host's wall time from QEMU's start to
//     the first HTTP 200 through the port forward; photon-init's boot
//     timeline per step.
//   - size: the stripped static binary, the demo's initramfs (built as
//     "make demo" builds it), beside busybox and runc as Debian packages
//     them (with runc's shared libraries).
//   - memory: photon-init's VmRSS and VmHWM after booting with 1, 10 and 50
//     containers (read by a probe container through a bind mount of the
//     machine's /proc), and the least guest memory (-m, bisected) with
//     which the demo VM boots and serves HTTP.
//   - unpack: a generated 200 MB multi-layer gzip image unpacked by
//     photon-init's image store (Store.Pull on the OCI layout), by gzip -d
//     | tar -x of the same layers and by umoci unpack.
//   - scale: 200 containers of a tiny static image in one VM: from the
//     containers step (manifests loaded) to all running; photon-init's RSS
//     and CPU while they idle and while 50 of them crash-loop.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/photon-init/photon-init/test/vm"
)

// The sections, in the order they run.
var allSections = []string{"size", "boot", "memory", "unpack", "scale"}

// options are the command line flags.
type options struct {
	n        int
	sections []string
	machines []vm.Machine
	variants []string
	outDir   string
	timeout  time.Duration
	verbose  bool
	extra    []string
	binary   string

	memCounts     []int
	memN          int
	bisect        bool
	bisectLo      int
	bisectHi      int
	bisectTimeout time.Duration
	memNet        string

	unpackMB  int
	unpackDir string
	unpackN   int

	scaleContainers int
	scaleCrashers   int
	scaleIdle       time.Duration
	scaleCrash      time.Duration
	scaleMemMB      int
	scaleN          int
}

// bench holds what the sections share.
type bench struct {
	o    options
	host *vm.Host
	work string
	out  io.Writer
	rep  *Report
}

// Report is the JSON document written to the results directory.
type Report struct {
	Time     time.Time     `json:"time"`
	Machine  HostInfo      `json:"host"`
	N        int           `json:"n"`
	Sections []string      `json:"sections"`
	Boot     *BootReport   `json:"boot,omitempty"`
	Size     *SizeReport   `json:"size,omitempty"`
	Memory   *MemoryReport `json:"memory,omitempty"`
	Unpack   *UnpackReport `json:"unpack,omitempty"`
	Scale    *ScaleReport  `json:"scale,omitempty"`
	Targets  []Target      `json:"targets"`
	Errors   []string      `json:"errors,omitempty"`
	// Load is the host's /proc/loadavg before and after each section:
	// other work on the host (other engineers' VMs) shows there.
	Load    map[string][2]string `json:"host_loadavg"`
	Seconds float64              `json:"seconds"`
}

// HostInfo describes where the benchmark ran.
type HostInfo struct {
	CPU     string `json:"cpu"`
	Cores   int    `json:"cores"`
	MemMB   int    `json:"mem_mb"`
	Kernel  string `json:"kernel"`
	Guest   string `json:"guest_kernel"`
	Accel   string `json:"accel"`
	QEMU    string `json:"qemu"`
	Go      string `json:"go"`
	Version string `json:"photon_init_version"`
}

// Target is one of issue 8's targets, with the figure it is judged on.
type Target struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	// Met is "yes", "no" or "n/a" (not measured in this run).
	Met string `json:"met"`
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(context.Background(), o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line.
func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	var sections, machines, variants, counts, extra string
	fs.IntVar(&o.n, "n", 5, "runs of each measurement (boot, memory, unpack)")
	fs.StringVar(&sections, "sections", strings.Join(allSections, ","), "comma-separated sections: "+strings.Join(allSections, ","))
	fs.StringVar(&machines, "machines", "q35,microvm", "comma-separated machine types (boot)")
	fs.StringVar(&variants, "variants", strings.Join(bootVariants(), ","), "comma-separated boot variants")
	fs.StringVar(&o.outDir, "out", "", "results directory (default: out/bench in the repository)")
	fs.DurationVar(&o.timeout, "timeout", 90*time.Second, "limit for one boot")
	fs.BoolVar(&o.verbose, "v", false, "echo every console to stderr")
	fs.StringVar(&o.binary, "photon-binary", "", "boot this photon-init binary in the boot, memory and scale sections instead of bin/photon-init (to compare a change)")
	fs.StringVar(&extra, "append", "", "more kernel arguments for every boot, e.g. photon.loglevel=debug (for investigating, not for figures)")
	fs.StringVar(&counts, "memory-containers", "1,10,50", "container counts of the memory section")
	fs.IntVar(&o.memN, "memory-n", 3, "boots per container count")
	fs.BoolVar(&o.bisect, "bisect", true, "bisect the demo's least guest memory (memory)")
	fs.IntVar(&o.bisectLo, "bisect-lo", 64, "bisection's low end, MB")
	fs.IntVar(&o.bisectHi, "bisect-hi", 512, "bisection's high end, MB")
	fs.DurationVar(&o.bisectTimeout, "bisect-timeout", 30*time.Second, "limit for one boot of the bisection (a boot that serves does in a few seconds)")
	fs.StringVar(&o.memNet, "memory-network", "none", "network_mode of the memory section's containers")
	fs.IntVar(&o.unpackMB, "unpack-mb", 200, "size of the unpack section's image, MB of files")
	fs.StringVar(&o.unpackDir, "unpack-dir", "/dev/shm", "where the unpack section unpacks (a tmpfs by default; on a disk, caches are dropped and each run ends with sync)")
	fs.IntVar(&o.unpackN, "unpack-n", 0, "unpack runs per tool (default -n)")
	fs.IntVar(&o.scaleContainers, "scale-containers", 200, "containers of the scale section")
	fs.IntVar(&o.scaleCrashers, "scale-crashers", 50, "of those, how many crash-loop")
	fs.DurationVar(&o.scaleIdle, "scale-idle", 20*time.Second, "idle window of the scale section")
	fs.DurationVar(&o.scaleCrash, "scale-crash", 30*time.Second, "crash-loop window of the scale section")
	fs.IntVar(&o.scaleMemMB, "scale-mem", 2048, "guest memory of the scale VM, MB")
	fs.IntVar(&o.scaleN, "scale-n", 1, "scale VMs")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.extra = strings.Fields(extra)
	if o.n < 1 {
		return o, fmt.Errorf("-n %d: need at least one run", o.n)
	}
	if o.unpackN == 0 {
		o.unpackN = o.n
	}
	for _, s := range splitList(sections) {
		if !slices.Contains(allSections, s) {
			return o, fmt.Errorf("-sections: unknown section %q (have %s)", s, strings.Join(allSections, ","))
		}
		o.sections = append(o.sections, s)
	}
	for _, m := range splitList(machines) {
		if !slices.Contains(vm.Machines(), vm.Machine(m)) {
			return o, fmt.Errorf("-machines: unknown machine %q", m)
		}
		o.machines = append(o.machines, vm.Machine(m))
	}
	for _, v := range splitList(variants) {
		if !slices.Contains(bootVariants(), v) {
			return o, fmt.Errorf("-variants: unknown variant %q (have %s)", v, strings.Join(bootVariants(), ","))
		}
		o.variants = append(o.variants, v)
	}
	for _, c := range splitList(counts) {
		k, err := strconv.Atoi(c)
		if err != nil || k < 1 {
			return o, fmt.Errorf("-memory-containers: %q is not a positive count", c)
		}
		o.memCounts = append(o.memCounts, k)
	}
	if o.scaleCrashers > o.scaleContainers {
		return o, fmt.Errorf("-scale-crashers %d is more than -scale-containers %d", o.scaleCrashers, o.scaleContainers)
	}
	if len(o.machines) == 0 || len(o.variants) == 0 {
		return o, errors.New("no machine or no variant")
	}
	return o, nil
}

// splitList splits a comma-separated flag, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// run builds, measures the selected sections and reports.
func run(ctx context.Context, o options, out io.Writer) error {
	began := time.Now()
	host, err := vm.DetectHost(ctx, vm.HostOptions{})
	if err != nil {
		return err
	}
	if o.outDir == "" {
		o.outDir = filepath.Join(host.Repo, "out", "bench")
	}
	b := &bench{o: o, host: host, work: filepath.Join(o.outDir, "work"), out: out}
	if err := os.MkdirAll(b.work, 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	if err := vm.BuildPhoton(ctx, host.Repo); err != nil {
		return err
	}
	b.rep = &Report{Time: began.UTC(), Machine: hostInfo(ctx, host), N: o.n, Sections: o.sections}
	b.logf("bench: sections %v, n=%d, %s, %d cores, guest kernel %s under %s",
		o.sections, o.n, b.rep.Machine.CPU, b.rep.Machine.Cores, host.Kernel.Release, host.Accel)
	var errs []error
	b.rep.Load = map[string][2]string{}
	for _, s := range o.sections {
		t0 := time.Now()
		load0 := loadavg()
		var err error
		switch s {
		case "boot":
			b.rep.Boot, err = b.runBoot(ctx)
		case "size":
			b.rep.Size, err = b.runSize(ctx)
		case "memory":
			b.rep.Memory, err = b.runMemory(ctx)
		case "unpack":
			b.rep.Unpack, err = b.runUnpack(ctx)
		case "scale":
			b.rep.Scale, err = b.runScale(ctx)
		}
		b.rep.Load[s] = [2]string{load0, loadavg()}
		b.logf("%s: %.0fs (host load average %s before, %s after)", s, time.Since(t0).Seconds(), load0, b.rep.Load[s][1])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
			b.rep.Errors = append(b.rep.Errors, fmt.Sprintf("%s: %v", s, err))
			b.logf("%s: FAILED: %v", s, err)
		}
	}
	b.rep.Targets = targets(b.rep)
	b.rep.Seconds = time.Since(began).Seconds()
	tables := b.tables()
	for _, t := range tables {
		t.t.print(out, t.title)
	}
	path, err := b.write(tables)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	fmt.Fprintf(out, "\nresults: %s (and %s)\n", path, filepath.Join(o.outDir, "latest.md"))
	return errors.Join(errs...)
}

// logf prints a progress line.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.out, format+"\n", args...)
}

// echo is where consoles are copied (-v), or nil.
func (b *bench) echo() io.Writer {
	if b.o.verbose {
		return os.Stderr
	}
	return nil
}

// hostInfo describes the host.
func hostInfo(ctx context.Context, host *vm.Host) HostInfo {
	h := HostInfo{Cores: runtime.NumCPU(), Guest: host.Kernel.Release, Accel: host.Accel, Go: runtime.Version()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kb); err == nil {
			h.MemMB = kb / 1024
		}
	}
	if out, err := exec.CommandContext(ctx, "uname", "-r").Output(); err == nil {
		h.Kernel = strings.TrimSpace(string(out))
	}
	if out, err := exec.CommandContext(ctx, host.QEMU, "--version").Output(); err == nil {
		h.QEMU = firstLine(string(out))
	}
	if out, err := exec.CommandContext(ctx, "git", "-C", host.Repo, "describe", "--tags", "--always", "--dirty").Output(); err == nil {
		h.Version = strings.TrimSpace(string(out))
	}
	return h
}

// write stores the report as bench-TIME.json and latest.json, and the
// tables as latest.md.
func (b *bench) write(tables []namedTable) (string, error) {
	data, err := json.MarshalIndent(b.rep, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding results: %w", err)
	}
	data = append(data, '\n')
	path := filepath.Join(b.o.outDir, "bench-"+b.rep.Time.Format("20060102T150405Z")+".json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", fmt.Errorf("writing results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.o.outDir, "latest.json"), data, 0o644); err != nil {
		return "", fmt.Errorf("writing results: %w", err)
	}
	f, err := os.Create(filepath.Join(b.o.outDir, "latest.md"))
	if err != nil {
		return "", fmt.Errorf("writing results: %w", err)
	}
	defer f.Close()
	h := b.rep.Machine
	fmt.Fprintf(f, "Measured %s on %s (%d cores, %d MB), host kernel %s, guest kernel %s under %s, %s, %s, photon-init %s; n=%d.\n",
		b.rep.Time.Format("2006-01-02"), h.CPU, h.Cores, h.MemMB, h.Kernel, h.Guest, h.Accel, h.QEMU, h.Go, h.Version, b.rep.N)
	var loads []string
	for _, sec := range b.rep.Sections {
		if l, ok := b.rep.Load[sec]; ok {
			loads = append(loads, fmt.Sprintf("%s %s → %s", sec, l[0], l[1]))
		}
	}
	fmt.Fprintf(f, "Host load average before → after each section: %s.\n", strings.Join(loads, "; "))
	for _, t := range tables {
		fmt.Fprintf(f, "\n**%s**\n\n", t.title)
		t.t.markdown(f)
	}
	return path, nil
}

// fileSize is the size of a file, 0 when it cannot be read.
func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// loadavg is the first three fields of /proc/loadavg.
func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
