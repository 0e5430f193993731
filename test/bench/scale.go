package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	pr "github.com/photon-init/photon-init/test/bench/internal/proberesult"
	"github.com/photon-init/photon-init/test/vm"
)

// crasherManifest is a container that blocks on /ctl/fifo and exits 1
// when the probe opens it, and exits 1 at once on every restart once
// /ctl/crash exists: from then on it crash-loops under restart: always.
func crasherManifest(network string) string {
	return "image: " + toolsRef + "\nnetwork_mode: " + network + "\nrestart: always\n" +
		"volumes: [\"ctl:/ctl\"]\n" +
		`command: ["/bin/sh", "-c", "[ -e /ctl/crash ] && exit 1; mkfifo /ctl/fifo 2>/dev/null; read x < /ctl/fifo; exit 1"]` + "\n"
}

// ScaleRun is one scale VM.
type ScaleRun struct {
	Iteration int        `json:"iteration"`
	Result    *pr.Result `json:"result,omitempty"`
	// Wall is the host's time from QEMU's start to the probe's result.
	Wall  float64 `json:"wall_s"`
	Error string  `json:"error,omitempty"`
}

// ScaleReport is the scale section's result.
type ScaleReport struct {
	Machine    vm.Machine `json:"machine"`
	GuestMB    int        `json:"guest_mb"`
	Containers int        `json:"containers"`
	Crashers   int        `json:"crashers"`
	Network    string     `json:"network_mode"`
	Runs       []ScaleRun `json:"runs"`
	// Statistics over the runs.
	Start          Stat `json:"manifests_to_all_running_s"`
	IdleCPU        Stat `json:"idle_cpu_percent"`
	IdleRSS        Stat `json:"idle_vmrss_mib"`
	IdleAnon       Stat `json:"idle_rss_anon_mib"`
	CrashCPU       Stat `json:"crash_cpu_percent"`
	CrashFirstCPU  Stat `json:"crash_first_5s_cpu_percent"`
	CrashRSS       Stat `json:"crash_vmrss_mib"`
	HWM            Stat `json:"vmhwm_mib"`
	Restarts       Stat `json:"restarts"`
	CrashChildCPU  Stat `json:"crash_children_cpu_percent"`
	CrashGuestBusy Stat `json:"crash_guest_busy_percent"`
	IdleGuestBusy  Stat `json:"idle_guest_busy_percent"`
}

// runScale boots one VM with many containers (one probe on top) and
// measures photon-init while they start, idle and crash-loop.
func (b *bench) runScale(ctx context.Context) (*ScaleReport, error) {
	dir := filepath.Join(b.work, "scale")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	layout := filepath.Join(dir, "tools-oci")
	if err := b.buildToolsImage(ctx, layout); err != nil {
		return nil, err
	}
	n, crashers := b.o.scaleContainers, b.o.scaleCrashers
	manifests := map[string]string{"probe": probeManifest("scale",
		"-total", strconv.Itoa(n+1), "-crashers", strconv.Itoa(crashers),
		"-settle", "5s", "-idle", b.o.scaleIdle.String(), "-crash", b.o.scaleCrash.String())}
	for i := 1; i <= n-crashers; i++ {
		manifests[fmt.Sprintf("sleep-%03d", i)] = sleeperManifest(b.o.memNet)
	}
	for i := 1; i <= crashers; i++ {
		manifests[fmt.Sprintf("crash-%03d", i)] = crasherManifest(b.o.memNet)
	}
	img := filepath.Join(dir, "photon-scale.img")
	if err := b.buildToolsInitramfs(ctx, img, layout, manifests); err != nil {
		return nil, err
	}
	rep := &ScaleReport{Machine: vm.Q35, GuestMB: b.o.scaleMemMB, Containers: n, Crashers: crashers, Network: b.o.memNet}
	var errs []error
	for i := 0; i < b.o.scaleN; i++ {
		r := ScaleRun{Iteration: i}
		res, wall, err := b.scaleBoot(ctx, img, n)
		r.Wall = wall.Seconds()
		if err != nil {
			r.Error = err.Error()
			errs = append(errs, fmt.Errorf("run %d: %w", i+1, err))
			b.logf("  scale run %d: FAILED: %s", i+1, firstLine(r.Error))
		} else {
			r.Result = res
			b.logf("  scale run %d: %d running %.2fs after the containers step; idle CPU %.2f%%, crash-loop CPU %.2f%% (%d restarts)",
				i+1, res.Containers, res.AllRunningUptime-res.ManifestsUptime, res.Idle.CPUPercent, res.Crash.CPUPercent, res.Restarts)
		}
		rep.Runs = append(rep.Runs, r)
	}
	var idleAnon []float64
	var start, idleCPU, idleRSS, crashCPU, firstCPU, crashRSS, hwm, restarts, childCPU, crashBusy, idleBusy []float64
	for _, r := range rep.Runs {
		res := r.Result
		if res == nil || res.Idle == nil || res.Crash == nil {
			continue
		}
		start = append(start, res.AllRunningUptime-res.ManifestsUptime)
		idleCPU = append(idleCPU, res.Idle.CPUPercent)
		idleRSS = append(idleRSS, kib(res.Idle.End.RSSkB))
		idleAnon = append(idleAnon, kib(res.Idle.End.AnonkB))
		idleBusy = append(idleBusy, res.Idle.GuestBusyPercent)
		crashCPU = append(crashCPU, res.Crash.CPUPercent)
		if res.CrashFirst5s != nil {
			firstCPU = append(firstCPU, res.CrashFirst5s.CPUPercent)
		}
		crashRSS = append(crashRSS, kib(res.Crash.End.RSSkB))
		hwm = append(hwm, kib(res.Crash.End.HWMkB))
		restarts = append(restarts, float64(res.Restarts))
		childCPU = append(childCPU, res.Crash.ChildrenCPUPercent)
		crashBusy = append(crashBusy, res.Crash.GuestBusyPercent)
	}
	rep.Start, rep.IdleCPU, rep.IdleRSS, rep.IdleAnon = statOf(start), statOf(idleCPU), statOf(idleRSS), statOf(idleAnon)
	rep.CrashCPU, rep.CrashFirstCPU, rep.CrashRSS = statOf(crashCPU), statOf(firstCPU), statOf(crashRSS)
	rep.HWM, rep.Restarts, rep.CrashChildCPU = statOf(hwm), statOf(restarts), statOf(childCPU)
	rep.CrashGuestBusy, rep.IdleGuestBusy = statOf(crashBusy), statOf(idleBusy)
	if len(errs) == len(rep.Runs) {
		return rep, errors.Join(errs...)
	}
	return rep, nil
}

// scaleBoot boots the scale image and returns the probe's result and the
// wall time to it.
func (b *bench) scaleBoot(ctx context.Context, img string, n int) (*pr.Result, time.Duration, error) {
	limit := b.o.timeout + time.Duration(n)*3*time.Second + b.o.scaleIdle + b.o.scaleCrash + time.Minute
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	v, err := vm.Start(ctx, vm.Config{
		Host: b.host, Machine: vm.Q35, Initramfs: img, MemoryMB: b.o.scaleMemMB,
		KernelArgs: append([]string{staticIP}, b.o.extra...), Echo: b.echo(),
	})
	if err != nil {
		return nil, 0, err
	}
	defer v.Kill()
	res, err := waitProbe(ctx, v)
	wall := time.Since(v.Started())
	if err != nil {
		return nil, wall, err
	}
	if res.Idle == nil || (b.o.scaleCrashers > 0 && res.Crash == nil) {
		return nil, wall, errors.New("the probe gave no idle or crash window")
	}
	return res, wall, nil
}

// scaleTable renders the scale section.
func scaleTable(r *ScaleReport) *table {
	t := newTable("measure", "value", "note")
	t.add("containers step → all running", r.Start.seconds(), fmt.Sprintf("%d containers + the probe, network_mode %s, %s, -m %d, 1 vCPU", r.Containers, r.Network, r.Machine, r.GuestMB))
	t.add("photon-init CPU, all idle", r.IdleCPU.format("%.2f%%"), fmt.Sprintf("utime+stime over the idle window; the whole guest: %s busy", r.IdleGuestBusy.format("%.1f%%")))
	t.add("photon-init VmRSS, all idle", r.IdleRSS.format("%.1f MiB"), "of which anonymous: "+r.IdleAnon.format("%.1f MiB"))
	t.add(fmt.Sprintf("photon-init CPU, %d crash-looping", r.Crashers), r.CrashCPU.format("%.2f%%"),
		fmt.Sprintf("over the crash window, %s restarts (backoff 100 ms doubling to 30 s); first 5 s: %s; reaped children: %s; the whole guest: %s busy",
			r.Restarts.format("%.0f"), r.CrashFirstCPU.format("%.1f%%"), r.CrashChildCPU.format("%.1f%%"), r.CrashGuestBusy.format("%.1f%%")))
	t.add("photon-init VmRSS, crash-looping", r.CrashRSS.format("%.1f MiB"), "at the end of the crash window")
	t.add("photon-init VmHWM", r.HWM.format("%.1f MiB"), "peak over the whole run")
	return t
}
