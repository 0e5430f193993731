package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
	// Anon and File split RSS (RssAnon, RssFile).
	Anon Stat `json:"rss_anon_mib"`
	File Stat `json:"rss_file_mib"`
	// Start is the time from the containers step to all running.
	Start Stat `json:"manifests_to_all_running_s"`
}

// BisectStep is one boot of the bisection.
type BisectStep struct {
	MemoryMB int     `json:"memory_mb"`
	Serves   bool    `json:"serves"`
	Wall200  float64 `json:"wall_to_http_200_s,omitempty"`
	Why      string  `json:"why,omitempty"`
}

// MemoryReport is the memory section's result.
type MemoryReport struct {
	Machine  vm.Machine   `json:"machine"`
	GuestMB  int          `json:"guest_mb"`
	Network  string       `json:"network_mode"`
	Runs     []MemoryRun  `json:"runs"`
	Summary  []MemoryStat `json:"summary"`
	Bisect   []BisectStep `json:"bisect,omitempty"`
	MinMB    int          `json:"demo_min_memory_mb,omitempty"`
	Confirm  *BisectStep  `json:"demo_min_memory_confirmed,omitempty"`
	BisectOn vm.Machine   `json:"bisect_machine,omitempty"`
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
				file = append(file, kib(r.Result.Memory.FilekB))
				start = append(start, r.Result.AllRunningUptime-r.Result.ManifestsUptime)
			}
		}
		rep.Summary = append(rep.Summary, MemoryStat{Containers: k, RSS: statOf(rss), HWM: statOf(hwm), Anon: statOf(anon), File: statOf(file), Start: statOf(start)})
	}
	if b.o.bisect {
		if err := b.bisectDemo(ctx, rep); err != nil {
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

// demoFailure matches what ends a demo boot that will not serve.
var demoFailure = regexp.MustCompile(`Kernel panic|Attempted to kill init|Out of memory|oom-kill|Initramfs unpacking failed|EMERGENCY`)

// bisectDemo finds the least guest memory (in 8 MB steps) with which the
// demo's initramfs boots and serves HTTP 200 through its published port,
// between -bisect-lo and -bisect-hi, then boots that size once more.
func (b *bench) bisectDemo(ctx context.Context, rep *MemoryReport) error {
	img, err := b.demoInitramfs(ctx)
	if err != nil {
		return err
	}
	rep.BisectOn = vm.Q35
	try := func(mb int) BisectStep {
		s := b.demoServes(ctx, img, mb)
		b.logf("  demo with -m %d: serves=%v %s", mb, s.Serves, s.Why)
		rep.Bisect = append(rep.Bisect, s)
		return s
	}
	lo, hi := b.o.bisectLo, b.o.bisectHi
	if !try(hi).Serves {
		return fmt.Errorf("the demo does not serve with %d MB", hi)
	}
	if try(lo).Serves {
		rep.MinMB = lo
		return nil
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
	rep.MinMB = hi
	c := b.demoServes(ctx, img, hi)
	rep.Confirm = &c
	b.logf("  demo with -m %d again: serves=%v %s", hi, c.Serves, c.Why)
	return nil
}

// demoServes boots the demo with mb of memory and says whether it
// answered HTTP 200 on its published port 8080.
func (b *bench) demoServes(ctx context.Context, img string, mb int) BisectStep {
	s := BisectStep{MemoryMB: mb}
	ctx, cancel := context.WithTimeout(ctx, b.o.timeout)
	defer cancel()
	v, err := vm.Start(ctx, vm.Config{Host: b.host, Machine: vm.Q35, Initramfs: img, MemoryMB: mb, GuestPorts: []int{8080}, Echo: b.echo()})
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
				failed <- "QEMU exited: " + firstLine(err.Error())
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
		s.Why = "no HTTP 200 within " + b.o.timeout.String()
	}
	cancel()
	return s
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
		Output: img, OverlayDir: filepath.Join(b.host.Repo, "configs"), Compress: "lz4",
		Images: []string{"demo/web:1.0=oci:" + layout + ":" + vm.ServerImageTag},
	})
	return img, err
}

// memoryTable renders the memory section.
func memoryTable(r *MemoryReport) *table {
	t := newTable("containers", "VmRSS", "of which anonymous", "of which file (the binary)", "VmHWM", "containers step → all running")
	for _, s := range r.Summary {
		t.add(fmt.Sprintf("%d + probe (network_mode %s)", s.Containers, r.Network), s.RSS.format("%.1f MiB"),
			s.Anon.format("%.1f MiB"), s.File.format("%.1f MiB"), s.HWM.format("%.1f MiB"), s.Start.seconds())
	}
	if r.MinMB > 0 {
		confirmed := ""
		if r.Confirm != nil {
			confirmed = fmt.Sprintf(" (served again: %v)", r.Confirm.Serves)
		}
		// The largest size below the minimum that did not serve.
		fails, best := "-", 0
		for _, s := range r.Bisect {
			if !s.Serves && s.MemoryMB < r.MinMB && s.MemoryMB > best {
				best = s.MemoryMB
			}
		}
		if best > 0 {
			fails = fmt.Sprintf("%d MB does not", best)
		}
		t.add(fmt.Sprintf("demo's least -m (%s)", r.BisectOn), fmt.Sprintf("%d MB serves%s", r.MinMB, confirmed), fails, "", "", "")
	}
	return t
}
