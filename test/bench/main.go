// Command bench measures how long photon-init takes to boot a VM, against
// a baseline /init that does nothing but report its timing
// (test/bench/baseline-init).
//
// It boots each machine type N times per init, interleaved (photon-init,
// baseline, photon-init, baseline, ...) so that drift in the host's load
// affects both alike, and reports median, minimum and maximum of
//
//   - the guest uptime when PID 1 started,
//   - the guest uptime at "boot complete",
//   - the wall time from QEMU's start to the host reading "boot complete",
//   - for photon-init, the time from PID-1 start to the exec of a
//     container's entrypoint: its initramfs holds one container (the
//     project's small HTTP server, preloaded with --image), which prints
//     the guest uptime at which it started,
//
// with the photon-init/baseline ratio of the medians. The baseline boots
// from an initramfs that "photon-init build --init" made with the same
// modules, so both unpack the same amount of data (-minimal-baseline
// boots it from an initramfs holding only itself instead). Results go to
// out/bench/ as JSON. Run it with "make bench" (BENCH_N=10 for more runs).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/photon-init/photon-init/test/vm"
)

// benchContainer is the name of the container photon-init boots into.
const benchContainer = "server"

// The two inits compared.
const (
	initPhoton   = "photon-init"
	initBaseline = "baseline"
)

// options are the command line flags.
type options struct {
	n               int
	machines        []vm.Machine
	outDir          string
	timeout         time.Duration
	minimalBaseline bool
	verbose         bool
}

// Run is one boot's measurements.
type Run struct {
	Machine   vm.Machine `json:"machine"`
	Init      string     `json:"init"`
	Iteration int        `json:"iteration"`
	// PID1Uptime is the guest uptime when PID 1 started, in seconds.
	PID1Uptime float64 `json:"pid1_uptime_s"`
	// PID1UptimeSource says where PID1Uptime came from: the init's start
	// line, or boot complete's "since kernel" minus "since PID-1 start".
	PID1UptimeSource string `json:"pid1_uptime_source"`
	// BootCompleteUptime is the guest uptime at boot complete, in seconds.
	BootCompleteUptime float64 `json:"boot_complete_uptime_s"`
	// Wall is the time from starting QEMU to reading boot complete, in
	// seconds.
	Wall float64 `json:"wall_s"`
	// EntrypointUptime is the guest uptime at which the container's
	// entrypoint started (photon-init only), in seconds.
	EntrypointUptime float64 `json:"entrypoint_uptime_s,omitempty"`
	// Error is why the boot was not measured.
	Error string `json:"error,omitempty"`
}

// Stat summarizes one metric of one init on one machine.
type Stat struct {
	Median float64 `json:"median_s"`
	Min    float64 `json:"min_s"`
	Max    float64 `json:"max_s"`
	N      int     `json:"n"`
}

// Summary compares the inits for one metric on one machine.
type Summary struct {
	Machine  vm.Machine `json:"machine"`
	Metric   string     `json:"metric"`
	Photon   Stat       `json:"photon_init"`
	Baseline Stat       `json:"baseline"`
	// Ratio is the photon-init median over the baseline median.
	Ratio float64 `json:"ratio"`
}

// Report is the JSON document written to out/bench/.
type Report struct {
	Time     time.Time `json:"time"`
	Accel    string    `json:"accel"`
	Kernel   string    `json:"kernel"`
	QEMU     string    `json:"qemu"`
	TSCkHz   int       `json:"tsc_khz"`
	N        int       `json:"n"`
	Baseline string    `json:"baseline_initramfs"`
	Runs     []Run     `json:"runs"`
	Summary  []Summary `json:"summary"`
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(context.Background(), opts, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line.
func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	var machines string
	fs.IntVar(&o.n, "n", 5, "boots per init and machine")
	fs.StringVar(&machines, "machines", "q35,microvm", "comma-separated machine types")
	fs.StringVar(&o.outDir, "out", "", "directory for the JSON results (default: out/bench in the repository)")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "limit for one boot")
	fs.BoolVar(&o.minimalBaseline, "minimal-baseline", false, "boot the baseline from an initramfs holding only itself")
	fs.BoolVar(&o.verbose, "v", false, "echo every console to stderr")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.n < 1 {
		return o, fmt.Errorf("-n %d: need at least one boot", o.n)
	}
	for _, m := range strings.Split(machines, ",") {
		m = strings.TrimSpace(m)
		if !slices.Contains(vm.Machines(), vm.Machine(m)) {
			return o, fmt.Errorf("-machines: unknown machine %q", m)
		}
		o.machines = append(o.machines, vm.Machine(m))
	}
	return o, nil
}

// run builds the images, boots them and reports.
func run(ctx context.Context, o options, out io.Writer) error {
	host, err := vm.DetectHost(ctx, vm.HostOptions{})
	if err != nil {
		return err
	}
	if o.outDir == "" {
		o.outDir = filepath.Join(host.Repo, "out", "bench")
	}
	work := filepath.Join(o.outDir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	images, baselineKind, err := buildImages(ctx, host, work, o.minimalBaseline)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "bench: %d boots per init on %v, %s, kernel %s\n", o.n, o.machines, host.Accel, host.Kernel.Release)

	var runs []Run
	var failed []error
	for i := 0; i < o.n; i++ {
		for _, m := range o.machines {
			for _, init := range []string{initPhoton, initBaseline} {
				r, err := boot(ctx, host, o, m, init, images[init])
				r.Iteration = i
				if err != nil {
					r.Error = err.Error()
					failed = append(failed, fmt.Errorf("%s on %s, run %d: %w", init, m, i+1, err))
					fmt.Fprintf(out, "  %-8s %-12s run %d: FAILED\n", m, init, i+1)
				} else {
					fmt.Fprintf(out, "  %-8s %-12s run %d: PID 1 at %.3fs, boot complete at %.3fs, %.3fs wall\n",
						m, init, i+1, r.PID1Uptime, r.BootCompleteUptime, r.Wall)
				}
				runs = append(runs, r)
			}
		}
	}
	rep := Report{
		Time: time.Now().UTC(), Accel: host.Accel, Kernel: host.Kernel.Image, QEMU: host.QEMU,
		TSCkHz: host.TSCkHz, N: o.n, Baseline: baselineKind, Runs: runs, Summary: summarize(runs, o.machines),
	}
	fmt.Fprintln(out)
	printTable(out, rep.Summary)
	path, err := writeReport(o.outDir, rep)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nresults: %s\n", path)
	return errors.Join(failed...)
}

// buildImages makes photon-init's initramfs and the baseline's.
func buildImages(ctx context.Context, host *vm.Host, work string, minimal bool) (map[string]string, string, error) {
	if err := vm.BuildPhoton(ctx, host.Repo); err != nil {
		return nil, "", err
	}
	baselineBin := filepath.Join(work, "baseline-init")
	if err := vm.BuildBaseline(ctx, host.Repo, baselineBin); err != nil {
		return nil, "", err
	}
	images := map[string]string{
		initPhoton:   filepath.Join(work, "photon-init.img"),
		initBaseline: filepath.Join(work, "baseline.img"),
	}
	// photon-init boots into one container: the server image, preloaded.
	layout := filepath.Join(work, "server-oci")
	if err := vm.BuildServerImage(ctx, host.Repo, layout); err != nil {
		return nil, "", err
	}
	overlay := filepath.Join(work, "overlay")
	if err := (vm.Overlay{"etc/photon/containers/" + benchContainer + ".yaml": "image: bench/server:1.0\n"}).Write(overlay); err != nil {
		return nil, "", err
	}
	photon := vm.BuildOptions{
		Output: images[initPhoton], Compress: "none", OverlayDir: overlay,
		Images: []string{"bench/server:1.0=oci:" + layout + ":" + vm.ServerImageTag},
	}
	if err := vm.BuildInitramfs(ctx, host, photon); err != nil {
		return nil, "", err
	}
	if minimal {
		return images, "minimal", vm.WriteMinimalInitramfs(images[initBaseline], baselineBin)
	}
	err := vm.BuildInitramfs(ctx, host, vm.BuildOptions{Output: images[initBaseline], Compress: "none", Init: baselineBin})
	return images, "photon-init build --init baseline-init", err
}

// boot boots one image once and measures it.
func boot(ctx context.Context, host *vm.Host, o options, m vm.Machine, init, image string) (Run, error) {
	r := Run{Machine: m, Init: init}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cfg := vm.Config{Host: host, Machine: m, Initramfs: image}
	if o.verbose {
		cfg.Echo = os.Stderr
	}
	v, err := vm.Start(ctx, cfg)
	if err != nil {
		return r, err
	}
	defer v.Kill()
	startRe := vm.PhotonStart
	if init == initBaseline {
		startRe = vm.BaselineStartUptime
	}
	start, err := v.WaitForLine(ctx, startRe)
	if err != nil {
		return r, err
	}
	done, err := v.WaitForLine(ctx, vm.BootComplete)
	if err != nil {
		return r, err
	}
	times, ok := vm.ParseBootComplete(done.Text)
	if !ok {
		return r, fmt.Errorf("cannot parse %q", done.Text)
	}
	r.BootCompleteUptime = times.SinceKernel.Seconds()
	r.Wall = done.At.Seconds()
	uptimeRe := vm.PhotonStartUptime
	if init == initBaseline {
		uptimeRe = vm.BaselineStartUptime
	}
	if up, ok := vm.ParseUptime(uptimeRe, start.Text); ok {
		r.PID1Uptime, r.PID1UptimeSource = up.Seconds(), "start line"
	} else {
		r.PID1Uptime, r.PID1UptimeSource = (times.SinceKernel - times.SincePID1).Seconds(), "boot complete"
	}
	if init == initPhoton {
		ready := regexp.MustCompile(`^\[` + benchContainer + `\] ` + vm.ServerReady.String())
		l, err := v.WaitForLine(ctx, ready)
		if err != nil {
			return r, fmt.Errorf("the container never started: %w", err)
		}
		up, ok := vm.ParseUptime(ready, l.Text)
		if !ok {
			return r, fmt.Errorf("cannot parse %q", l.Text)
		}
		r.EntrypointUptime = up.Seconds()
	}
	if _, ok := v.Find(vm.KernelPanic); ok {
		return r, fmt.Errorf("kernel panic; console ends:\n%s", v.ConsoleTail(30))
	}
	return r, nil
}

// metrics names the measured values, in table order.
func metrics() []struct {
	name string
	get  func(Run) float64
} {
	return []struct {
		name string
		get  func(Run) float64
	}{
		{"guest uptime at PID-1 start", func(r Run) float64 { return r.PID1Uptime }},
		{"guest uptime at boot complete", func(r Run) float64 { return r.BootCompleteUptime }},
		{"wall: QEMU start to boot complete", func(r Run) float64 { return r.Wall }},
		{"PID-1 start to container entrypoint exec", func(r Run) float64 {
			if r.EntrypointUptime == 0 {
				return -1 // the baseline runs no container
			}
			return r.EntrypointUptime - r.PID1Uptime
		}},
	}
}

// summarize computes each metric's statistics per machine and init.
func summarize(runs []Run, machines []vm.Machine) []Summary {
	var out []Summary
	for _, m := range machines {
		for _, metric := range metrics() {
			s := Summary{Machine: m, Metric: metric.name}
			s.Photon = stat(runs, m, initPhoton, metric.get)
			s.Baseline = stat(runs, m, initBaseline, metric.get)
			if s.Baseline.Median > 0 {
				s.Ratio = s.Photon.Median / s.Baseline.Median
			}
			out = append(out, s)
		}
	}
	return out
}

// stat computes median, minimum and maximum over the successful runs of
// one init on one machine.
func stat(runs []Run, m vm.Machine, init string, get func(Run) float64) Stat {
	var xs []float64
	for _, r := range runs {
		if r.Machine == m && r.Init == init && r.Error == "" {
			if x := get(r); x >= 0 {
				xs = append(xs, x)
			}
		}
	}
	if len(xs) == 0 {
		return Stat{}
	}
	slices.Sort(xs)
	med := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		med = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return Stat{Median: med, Min: xs[0], Max: xs[len(xs)-1], N: len(xs)}
}

// printTable writes the summary as an aligned table.
func printTable(out io.Writer, sums []Summary) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "machine\tmetric\tphoton-init median [min, max]\tbaseline median [min, max]\tphoton/baseline")
	for _, s := range sums {
		ratio := "-"
		if s.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f", s.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Machine, s.Metric, formatStat(s.Photon), formatStat(s.Baseline), ratio)
	}
	tw.Flush()
}

// formatStat renders "1.234s [1.200s, 1.300s]".
func formatStat(s Stat) string {
	if s.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3fs [%.3fs, %.3fs]", s.Median, s.Min, s.Max)
}

// writeReport writes the report as bench-TIME.json and latest.json.
func writeReport(dir string, rep Report) (string, error) {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding results: %w", err)
	}
	data = append(data, '\n')
	path := filepath.Join(dir, "bench-"+rep.Time.Format("20060102T150405Z")+".json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", fmt.Errorf("writing results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), data, 0o644); err != nil {
		return "", fmt.Errorf("writing results: %w", err)
	}
	return path, nil
}
