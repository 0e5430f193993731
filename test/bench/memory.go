package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	pr "github.com/photon-init/photon-init/test/bench/internal/proberesult"
	"github.com/photon-init/photon-init/test/vm"
)

// memoryMachine is the machine type of the memory section.
const memoryMachine = vm.Q35

// MemoryRun is one boot with some containers.
type MemoryRun struct {
	// Containers is the number of sleeping containers (the probe comes on
	// top).
	Containers int        `json:"containers"`
	Iteration  int        `json:"iteration"`
	Result     *pr.Result `json:"result,omitempty"`
	Error      string     `json:"error,omitempty"`
}

// MemoryStat is photon-init's memory with some containers.
type MemoryStat struct {
	Containers int `json:"containers"`
	// RSS and HWM are VmRSS and VmHWM, in MiB.
	RSS Stat `json:"vmrss_mib"`
	HWM Stat `json:"vmhwm_mib"`
	// Anon and File split RSS: RssAnon, and RssFile+RssShmem (the
	// binary's pages).
	Anon Stat `json:"rss_anon_mib"`
	File Stat `json:"rss_file_shmem_mib"`
	// Start is the time from the containers step to all running.
	Start Stat `json:"manifests_to_all_running_s"`
	// AnonPerContainerKiB is what each container beyond those of the
	// smallest count adds to the anonymous memory, in KiB: the slope of
	// the medians (0 for the smallest count).
	AnonPerContainerKiB float64 `json:"rss_anon_per_container_kib,omitempty"`
}

// perContainer sets each summary's AnonPerContainerKiB from the medians,
// against the summary of the smallest count.
func perContainer(stats []MemoryStat) {
	if len(stats) == 0 {
		return
	}
	base := stats[0]
	for _, s := range stats {
		if s.Containers < base.Containers {
			base = s
		}
	}
	for i := range stats {
		if d := stats[i].Containers - base.Containers; d > 0 && base.Anon.N > 0 && stats[i].Anon.N > 0 {
			stats[i].AnonPerContainerKiB = (stats[i].Anon.Median - base.Anon.Median) * 1024 / float64(d)
		}
	}
}

// BisectStep is one boot of a bisection.
type BisectStep struct {
	MemoryMB int     `json:"memory_mb"`
	Serves   bool    `json:"serves"`
	Wall200  float64 `json:"wall_to_http_200_s,omitempty"`
	Why      string  `json:"why,omitempty"`
}

// Bisection is the least guest memory with which an initramfs boots and
// serves HTTP.
type Bisection struct {
	// Name says which initramfs: "demo" or "floor".
	Name       string       `json:"name"`
	Machine    vm.Machine   `json:"machine"`
	ImageBytes int64        `json:"initramfs_bytes"`
	Steps      []BisectStep `json:"steps"`
	// MinMB is the least size that served (0: none did).
	MinMB int `json:"min_memory_mb"`
	// Confirm is a second boot at MinMB.
	Confirm *BisectStep `json:"confirm,omitempty"`
}

// MemoryReport is the memory section's result.
type MemoryReport struct {
	Machine vm.Machine   `json:"machine"`
	GuestMB int          `json:"guest_mb"`
	Network string       `json:"network_mode"`
	Runs    []MemoryRun  `json:"runs"`
	Summary []MemoryStat `json:"summary"`
	// Bisections are the demo's and, for reference, the floor's.
	Bisections []Bisection `json:"bisections,omitempty"`
}

// demoMinMB is the demo's least memory, 0 when not bisected.
func (r *MemoryReport) demoMinMB() int {
	for _, b := range r.Bisections {
		if b.Name == "demo" {
			return b.MinMB
		}
	}
	return 0
}

// runMemory measures photon-init's memory with 1, 10 and 50 containers,
// and bisects the demo's least guest memory.
func (b *bench) runMemory(ctx context.Context) (*MemoryReport, error) {
	dir := filepath.Join(b.work, "memory")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	layout := filepath.Join(dir, "tools-oci")
	if err := b.buildToolsImage(ctx, layout); err != nil {
		return nil, err
	}
	images := map[int]string{}
	for _, k := range b.o.memCounts {
		manifests := map[string]string{"probe": probeManifest("memory", "-total", strconv.Itoa(k+1))}
		for i := 1; i <= k; i++ {
			manifests[fmt.Sprintf("sleep-%03d", i)] = sleeperManifest(b.o.memNet)
		}
		images[k] = filepath.Join(dir, fmt.Sprintf("photon-%d.img", k))
		if err := b.buildToolsInitramfs(ctx, images[k], layout, manifests); err != nil {
			return nil, err
		}
	}
	rep := &MemoryReport{Machine: memoryMachine, GuestMB: vm.DefaultMemoryMB, Network: b.o.memNet}
	var errs []error
	for i := 0; i < b.o.memN; i++ {
		for _, k := range b.o.memCounts {
			r := MemoryRun{Containers: k, Iteration: i}
			res, err := b.memoryBoot(ctx, images[k], k)
			if err != nil {
				r.Error = err.Error()
				errs = append(errs, fmt.Errorf("%d containers, run %d: %w", k, i+1, err))
				b.logf("  memory %3d containers run %d: FAILED: %s", k, i+1, firstLine(r.Error))
			} else {
				r.Result = res
				b.logf("  memory %3d containers run %d: VmRSS %.1f MiB, VmHWM %.1f MiB, all running %.2fs after the containers step",
					k, i+1, kib(res.Memory.RSSkB), kib(res.Memory.HWMkB), res.AllRunningUptime-res.ManifestsUptime)
			}
			rep.Runs = append(rep.Runs, r)
		}
	}
	for _, k := range b.o.memCounts {
		var rss, hwm, anon, file, start []float64
		for _, r := range rep.Runs {
			if r.Containers == k && r.Result != nil && r.Result.Memory != nil {
				rss = append(rss, kib(r.Result.Memory.RSSkB))
				hwm = append(hwm, kib(r.Result.Memory.HWMkB))
				anon = append(anon, kib(r.Result.Memory.AnonkB))
				file = append(file, kib(r.Result.Memory.FilekB+r.Result.Memory.ShmemkB))
				start = append(start, r.Result.AllRunningUptime-r.Result.ManifestsUptime)
			}
		}
		rep.Summary = append(rep.Summary, MemoryStat{Containers: k, RSS: statOf(rss), HWM: statOf(hwm), Anon: statOf(anon), File: statOf(file), Start: statOf(start)})
	}
	perContainer(rep.Summary)
	if b.o.bisect {
		if err := b.bisections(ctx, rep); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > len(rep.Runs)/2 {
		return rep, errors.Join(errs...)
	}
	return rep, nil
}

// kib converts KiB to MiB.
func kib(n int64) float64 { return float64(n) / 1024 }

// memoryBoot boots an image of the memory section and returns the
// probe's result.
func (b *bench) memoryBoot(ctx context.Context, image string, k int) (*pr.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, b.o.timeout+time.Duration(k)*2*time.Second)
	defer cancel()
	v, err := vm.Start(ctx, vm.Config{
		Host: b.host, Machine: memoryMachine, Initramfs: image,
		KernelArgs: append([]string{staticIP}, b.o.extra...), Echo: b.echo(),
	})
	if err != nil {
		return nil, err
	}
	defer v.Kill()
	res, err := waitProbe(ctx, v)
	if err != nil {
		return nil, err
	}
	if res.Memory == nil {
		return nil, errors.New("the probe gave no memory sample")
	}
	return res, nil
}

// demoFailure matches what ends a boot that will not serve.
var demoFailure = regexp.MustCompile(`Kernel panic|Attempted to kill init|Out of memory|oom-kill|Initramfs unpacking failed|EMERGENCY`)

// bisections bisects the demo's least guest memory, and the floor's for
// reference (what the kernel itself needs with a small initramfs).
func (b *bench) bisections(ctx context.Context, rep *MemoryReport) error {
	demo, err := b.demoInitramfs(ctx)
	if err != nil {
		return err
	}
	floor, err := b.floorInitramfs(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range []struct {
		name, img string
		args      []string
	}{
		{"demo", demo, nil},
		{"floor", floor, []string{"benchmachine=" + string(vm.Q35)}},
	} {
		bi, err := b.bisect(ctx, c.name, c.img, c.args)
		rep.Bisections = append(rep.Bisections, bi)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// bisect finds the least guest memory (in 8 MB steps, between -bisect-lo
// and -bisect-hi) with which img boots on q35 and answers HTTP 200 on
// port 8080 through the port forward, then boots that size once more.
func (b *bench) bisect(ctx context.Context, name, img string, args []string) (Bisection, error) {
	bi := Bisection{Name: name, Machine: vm.Q35, ImageBytes: fileSize(img)}
	try := func(mb int) BisectStep {
		s := b.serves(ctx, img, args, mb)
		b.logf("  %s with -m %d: serves=%v %s", name, mb, s.Serves, firstLine(s.Why))
		bi.Steps = append(bi.Steps, s)
		return s
	}
	lo, hi := b.o.bisectLo, b.o.bisectHi
	if !try(hi).Serves {
		return bi, fmt.Errorf("%s does not serve with %d MB", name, hi)
	}
	if try(lo).Serves {
		bi.MinMB = lo
		return bi, nil
	}
	// lo fails, hi serves.
	for hi-lo > 8 {
		mid := (lo + hi) / 2 / 8 * 8
		if mid <= lo {
			mid = lo + 8
		}
		if try(mid).Serves {
			hi = mid
		} else {
			lo = mid
		}
	}
	bi.MinMB = hi
	c := b.serves(ctx, img, args, hi)
	bi.Confirm = &c
	b.logf("  %s with -m %d again: serves=%v %s", name, hi, c.Serves, firstLine(c.Why))
	return bi, nil
}

// serves boots img with mb of memory and says whether it answered HTTP
// 200 on port 8080.
func (b *bench) serves(ctx context.Context, img string, args []string, mb int) BisectStep {
	s := BisectStep{MemoryMB: mb}
	ctx, cancel := context.WithTimeout(ctx, b.o.bisectTimeout)
	defer cancel()
	v, err := vm.Start(ctx, vm.Config{
		Host: b.host, Machine: vm.Q35, Initramfs: img, MemoryMB: mb, GuestPorts: []int{8080},
		KernelArgs: append(slices.Clone(args), b.o.extra...), Echo: b.echo(),
	})
	if err != nil {
		s.Why = err.Error()
		return s
	}
	defer v.Kill()
	type result struct {
		wall time.Duration
		err  error
	}
	served := make(chan result, 1)
	go func() {
		w, err := waitHTTP200(ctx, v.Addr(8080), v.Started())
		served <- result{w, err}
	}()
	failed := make(chan string, 1)
	go func() {
		l, err := v.WaitForLine(ctx, demoFailure)
		if err != nil {
			if ctx.Err() == nil { // QEMU exited
				failed <- "QEMU exited; console ends: " + v.ConsoleTail(3)
			}
			return
		}
		failed <- l.Text
	}()
	select {
	case r := <-served:
		if r.err != nil {
			s.Why = r.err.Error()
			return s
		}
		s.Serves, s.Wall200 = true, r.wall.Seconds()
		if l, ok := v.Find(demoFailure); ok {
			s.Why = "served, but: " + l.Text
		}
	case why := <-failed:
		s.Why = why
	case <-ctx.Done():
		s.Why = "no HTTP 200 within " + b.o.bisectTimeout.String()
	}
	return s
}

// floorInitramfs builds the floor's initramfs (as the boot section does)
// for the memory bisection.
func (b *bench) floorInitramfs(ctx context.Context) (string, error) {
	dir := filepath.Join(b.work, "floor")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	layout, rootfs := filepath.Join(dir, "server-oci"), filepath.Join(dir, "server-rootfs")
	if err := vm.BuildServerImage(ctx, b.host.Repo, layout); err != nil {
		return "", err
	}
	if err := unpackLayout(ctx, layout, rootfs); err != nil {
		return "", err
	}
	img := filepath.Join(dir, "floor.img")
	return img, b.buildFloor(ctx, img, rootfs)
}

// demoInitramfs builds the demo's initramfs as test/demo does (lz4,
// configs/ as the overlay, the web image preloaded) once.
func (b *bench) demoInitramfs(ctx context.Context) (string, error) {
	dir := filepath.Join(b.work, "demo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	layout := filepath.Join(dir, "web-oci")
	if err := vm.BuildServerImage(ctx, b.host.Repo, layout); err != nil {
		return "", err
	}
	img := filepath.Join(dir, "initramfs.img")
	err := vm.BuildInitramfs(ctx, b.host, vm.BuildOptions{
		Binary: b.o.binary, Output: img, OverlayDir: filepath.Join(b.host.Repo, "configs"), Compress: "lz4",
		Images: []string{"demo/web:1.0=oci:" + layout + ":" + vm.ServerImageTag},
	})
	return img, err
}

// memoryTable renders the memory section.
func memoryTable(r *MemoryReport) *table {
	t := newTable("containers", "VmRSS", "of which anonymous", "anonymous per container (slope of medians)", "of which the binary (file+shmem)", "VmHWM", "containers step → all running")
	for _, s := range r.Summary {
		per := "-"
		if s.AnonPerContainerKiB != 0 {
			per = fmt.Sprintf("%.0f KiB", s.AnonPerContainerKiB)
		}
		t.add(fmt.Sprintf("%d + probe (network_mode %s)", s.Containers, r.Network), s.RSS.format("%.1f MiB"),
			s.Anon.format("%.1f MiB"), per, s.File.format("%.1f MiB"), s.HWM.format("%.1f MiB"), s.Start.seconds())
	}
	return t
}

// bisectTable renders the bisections.
func bisectTable(r *MemoryReport) *table {
	t := newTable("initramfs", "size", "least -m that serves", "largest that does not", "why it does not")
	for _, bi := range r.Bisections {
		least := "none"
		if bi.MinMB > 0 {
			least = fmt.Sprintf("%d MB", bi.MinMB)
			if bi.Confirm != nil {
				least += fmt.Sprintf(" (again: %v)", bi.Confirm.Serves)
			}
		}
		// The largest size below the minimum that did not serve.
		best := BisectStep{}
		for _, s := range bi.Steps {
			if !s.Serves && (bi.MinMB == 0 || s.MemoryMB < bi.MinMB) && s.MemoryMB > best.MemoryMB {
				best = s
			}
		}
		fails, why := "-", ""
		if best.MemoryMB > 0 {
			fails, why = fmt.Sprintf("%d MB", best.MemoryMB), shorten(firstLine(best.Why), 90)
		}
		t.add(fmt.Sprintf("%s (%s)", bi.Name, bi.Machine), mib(bi.ImageBytes), least, fails, why)
	}
	return t
}
