package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/photon-init/photon-init/test/vm"
)

// The boot section's variants.
const (
	variantPhoton       = "photon-init"
	variantPhotonDHCP   = "photon-init-dhcp"
	variantPhotonBridge = "photon-init-bridge"
	variantFloor        = "floor"
	variantRunc         = "busybox-runc"
)

// bootVariants lists the variants in table order.
func bootVariants() []string {
	return []string{variantPhoton, variantPhotonDHCP, variantPhotonBridge, variantFloor, variantRunc}
}

// variantNotes says what each variant is, for the report.
var variantNotes = map[string]string{
	variantPhoton:       "photon-init, server container with network_mode host, ip= static (no DHCP)",
	variantPhotonDHCP:   "the same, DHCP instead of ip= (photon-init's default)",
	variantPhotonBridge: "photon-init, server container bridged with ports 8080:8080, ip= static",
	variantFloor:        "floor-init: mount /proc, load the NIC modules, eth0 static, exec the server (no container)",
	variantRunc:         "busybox sh as /init: mounts, insmod, ip, then Debian's runc run --no-pivot of the server's bundle (host network)",
}

// Console lines of the boot section.
var (
	kernelRunInit  = regexp.MustCompile(`^\[\s*(\d+\.\d+)\] Run /init as init process`)
	floorStart     = regexp.MustCompile(`floor: pid1 start uptime (\d+\.\d+)s`)
	runcStart      = regexp.MustCompile(`runc-init: pid1 start uptime (\d+\.\d+)s`)
	serverListen   = regexp.MustCompile(`httpserver: listening on :8080 uptime=(\d+\.\d+)`)
	serverFirst    = regexp.MustCompile(`httpserver: first request uptime=(\d+\.\d+)`)
	timelineLine   = regexp.MustCompile(`photon-init: timeline: (\S+)\s+(\d+\.\d+)s → (\d+\.\d+)s`)
	serverRunning  = regexp.MustCompile(`^\[\s*(\d+\.\d+)\] photon-init: container ` + serverName + `: running`)
	photonDHCPDone = regexp.MustCompile(`^\[\s*(\d+\.\d+)\] photon-init: dhcp: eth0 leased`)
)

// BootRun is one boot's measurements; uptimes are the guest's, in
// seconds, 0 when not seen.
type BootRun struct {
	Machine   vm.Machine `json:"machine"`
	Variant   string     `json:"variant"`
	Iteration int        `json:"iteration"`
	// InitExec is the kernel's "Run /init as init process" timestamp:
	// PID 1 is executed.
	InitExec float64 `json:"init_exec_uptime_s"`
	// SelfStart is the uptime the init prints first thing (photon-init
	// after the Go runtime's and its packages' initialisation).
	SelfStart float64 `json:"self_start_uptime_s"`
	// Entrypoint is the server's start ("listening" line).
	Entrypoint float64 `json:"entrypoint_uptime_s"`
	// FirstRequest is when the server got its first request.
	FirstRequest float64 `json:"first_request_uptime_s"`
	// Wall200 is the host's time from starting QEMU to the first HTTP
	// 200 through the port forward.
	Wall200 float64 `json:"wall_to_http_200_s"`
	// BootComplete is photon-init's boot complete.
	BootComplete float64 `json:"boot_complete_uptime_s,omitempty"`
	// Running is photon-init's "container server: running" timestamp.
	Running float64 `json:"container_running_uptime_s,omitempty"`
	// DHCPLease is when photon-init's DHCP lease was applied.
	DHCPLease float64 `json:"dhcp_lease_uptime_s,omitempty"`
	// Timeline is photon-init's boot timeline: step to duration in
	// seconds.
	Timeline map[string]float64 `json:"timeline,omitempty"`
	// TimelineStart is each step's start uptime.
	TimelineStart map[string]float64 `json:"timeline_start,omitempty"`
	Error         string             `json:"error,omitempty"`
}

// BootReport is the boot section's result.
type BootReport struct {
	Machines []vm.Machine        `json:"machines"`
	Variants []string            `json:"variants"`
	Notes    map[string]string   `json:"notes"`
	Images   map[string]int64    `json:"initramfs_bytes"`
	Runs     []BootRun           `json:"runs"`
	Summary  []BootSummary       `json:"summary"`
	Steps    []TimelineStepStats `json:"photon_timeline"`
}

// BootSummary is one machine's and variant's statistics.
type BootSummary struct {
	Machine vm.Machine `json:"machine"`
	Variant string     `json:"variant"`
	// The uptimes of BootRun, and the derived durations.
	InitExec     Stat `json:"init_exec_uptime_s"`
	SelfStart    Stat `json:"self_start_uptime_s"`
	Entrypoint   Stat `json:"entrypoint_uptime_s"`
	FirstRequest Stat `json:"first_request_uptime_s"`
	Wall200      Stat `json:"wall_to_http_200_s"`
	// InitToEntrypoint is Entrypoint - InitExec: PID 1's exec to the
	// container's entrypoint.
	InitToEntrypoint Stat `json:"init_exec_to_entrypoint_s"`
	// EntrypointToRequest is FirstRequest - Entrypoint.
	EntrypointToRequest Stat `json:"entrypoint_to_first_request_s"`
}

// TimelineStepStats is the median duration of one of photon-init's boot
// steps (and of the phases after the boot: the container's start).
type TimelineStepStats struct {
	Machine vm.Machine `json:"machine"`
	Variant string     `json:"variant"`
	Step    string     `json:"step"`
	Start   Stat       `json:"start_uptime_s"`
	Seconds Stat       `json:"duration_s"`
}

// runBoot boots every variant on every machine n times, interleaved.
func (b *bench) runBoot(ctx context.Context) (*BootReport, error) {
	images, err := b.buildBootImages(ctx)
	if err != nil {
		return nil, err
	}
	rep := &BootReport{Machines: b.o.machines, Variants: b.o.variants, Notes: map[string]string{}, Images: map[string]int64{}}
	imageOf := map[string]string{
		variantPhoton: images.Photon, variantPhotonDHCP: images.Photon, variantPhotonBridge: images.PhotonBridge,
		variantFloor: images.Floor, variantRunc: images.Runc,
	}
	for _, v := range b.o.variants {
		rep.Notes[v] = variantNotes[v]
		rep.Images[v] = fileSize(imageOf[v])
	}
	b.logf("boot: %d boots of %v on %v", b.o.n, b.o.variants, b.o.machines)
	var failed []error
	for i := 0; i < b.o.n; i++ {
		for _, m := range b.o.machines {
			// The variants' order turns every round, so that none is
			// always first after a change of machine.
			order := slices.Clone(b.o.variants)
			rot := i % len(order)
			order = append(order[rot:], order[:rot]...)
			for _, v := range order {
				r := b.bootOnce(ctx, m, v, imageOf[v])
				r.Iteration = i
				if r.Error != "" {
					failed = append(failed, fmt.Errorf("%s on %s, run %d: %s", v, m, i+1, r.Error))
					b.logf("  %-8s %-19s run %d: FAILED: %s", m, v, i+1, firstLine(r.Error))
				} else {
					b.logf("  %-8s %-19s run %d: PID 1 %.3fs, entrypoint %.3fs, first request %.3fs, HTTP 200 after %.3fs wall",
						m, v, i+1, r.InitExec, r.Entrypoint, r.FirstRequest, r.Wall200)
				}
				rep.Runs = append(rep.Runs, r)
			}
		}
	}
	rep.Summary, rep.Steps = summarizeBoot(rep.Runs, b.o.machines, b.o.variants)
	if len(failed) > len(rep.Runs)/2 {
		return rep, errors.Join(failed...)
	}
	return rep, nil
}

// bootOnce boots one variant once and measures it.
func (b *bench) bootOnce(ctx context.Context, m vm.Machine, variant, image string) BootRun {
	r := BootRun{Machine: m, Variant: variant}
	if err := b.bootMeasure(ctx, m, variant, image, &r); err != nil {
		r.Error = err.Error()
	}
	return r
}

// bootMeasure does bootOnce's work.
func (b *bench) bootMeasure(ctx context.Context, m vm.Machine, variant, image string, r *BootRun) error {
	ctx, cancel := context.WithTimeout(ctx, b.o.timeout)
	defer cancel()
	args := []string{"benchmachine=" + string(m)}
	if variant != variantPhotonDHCP && variant != variantFloor && variant != variantRunc {
		args = append(args, staticIP)
	}
	cfg := vm.Config{Host: b.host, Machine: m, Initramfs: image, KernelArgs: append(args, b.o.extra...), GuestPorts: []int{8080}, Echo: b.echo()}
	v, err := vm.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer v.Kill()
	l, err := v.WaitForLine(ctx, kernelRunInit)
	if err != nil {
		return err
	}
	r.InitExec = uptimeOf(kernelRunInit, l.Text)
	wall, err := waitHTTP200(ctx, v.Addr(8080), v.Started())
	if err != nil {
		return fmt.Errorf("no HTTP 200: %w; console ends:\n%s", err, v.ConsoleTail(30))
	}
	r.Wall200 = wall.Seconds()
	for _, want := range []struct {
		re  *regexp.Regexp
		out *float64
	}{{serverListen, &r.Entrypoint}, {serverFirst, &r.FirstRequest}} {
		l, err := v.WaitForLine(ctx, want.re)
		if err != nil {
			return err
		}
		*want.out = uptimeOf(want.re, l.Text)
	}
	selfStart := map[string]*regexp.Regexp{variantFloor: floorStart, variantRunc: runcStart}[variant]
	if selfStart == nil {
		selfStart = vm.PhotonStartUptime
		if l, ok := v.Find(vm.BootComplete); ok {
			if t, ok := vm.ParseBootComplete(l.Text); ok {
				r.BootComplete = t.SinceKernel.Seconds()
			}
		}
		r.Timeline, r.TimelineStart = map[string]float64{}, map[string]float64{}
		for _, l := range v.Lines() {
			if mm := timelineLine.FindStringSubmatch(l.Text); mm != nil {
				start, _ := strconv.ParseFloat(mm[2], 64)
				end, _ := strconv.ParseFloat(mm[3], 64)
				r.Timeline[mm[1]], r.TimelineStart[mm[1]] = end-start, start
			}
		}
		if l, ok := v.Find(serverRunning); ok {
			r.Running = uptimeOf(serverRunning, l.Text)
		}
		if l, ok := v.Find(photonDHCPDone); ok {
			r.DHCPLease = uptimeOf(photonDHCPDone, l.Text)
		}
	}
	if l, ok := v.Find(selfStart); ok {
		r.SelfStart = uptimeOf(selfStart, l.Text)
	}
	if l, ok := v.Find(vm.KernelPanic); ok {
		return fmt.Errorf("kernel panic: %q", l.Text)
	}
	return nil
}

// waitHTTP200 sends GET / to addr every 50 ms, each attempt on its own
// connection with a 3 s limit, until one gets 200, and returns the time
// since start at that answer. Overlapping attempts keep the resolution at
// 50 ms even when QEMU's user network holds a connection made before the
// guest listened (it accepts on the host at once and may then hang).
func waitHTTP200(ctx context.Context, addr string, start time.Time) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	done := make(chan time.Duration, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
			if err != nil {
				return
			}
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			at := time.Since(start)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				select {
				case done <- at:
				default:
				}
			}
		}()
		select {
		case at := <-done:
			return at, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		}
	}
}

// uptimeOf parses re's first group in line as seconds, NaN-free (0 when
// it does not match).
func uptimeOf(re *regexp.Regexp, line string) float64 {
	m := re.FindStringSubmatch(line)
	if len(m) < 2 {
		return 0
	}
	x, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0
	}
	return x
}

// summarizeBoot computes the statistics of each machine and variant, and
// of photon-init's timeline steps.
func summarizeBoot(runs []BootRun, machines []vm.Machine, variants []string) ([]BootSummary, []TimelineStepStats) {
	var sums []BootSummary
	var steps []TimelineStepStats
	for _, m := range machines {
		for _, v := range variants {
			var ok []BootRun
			for _, r := range runs {
				if r.Machine == m && r.Variant == v && r.Error == "" {
					ok = append(ok, r)
				}
			}
			get := func(f func(BootRun) float64) Stat {
				var xs []float64
				for _, r := range ok {
					xs = append(xs, f(r))
				}
				return statOf(xs)
			}
			val := func(x float64) float64 {
				if x == 0 {
					return math.NaN()
				}
				return x
			}
			sub := func(a, b float64) float64 {
				if a == 0 || b == 0 {
					return math.NaN()
				}
				return a - b
			}
			sums = append(sums, BootSummary{
				Machine: m, Variant: v,
				InitExec:            get(func(r BootRun) float64 { return val(r.InitExec) }),
				SelfStart:           get(func(r BootRun) float64 { return val(r.SelfStart) }),
				Entrypoint:          get(func(r BootRun) float64 { return val(r.Entrypoint) }),
				FirstRequest:        get(func(r BootRun) float64 { return val(r.FirstRequest) }),
				Wall200:             get(func(r BootRun) float64 { return val(r.Wall200) }),
				InitToEntrypoint:    get(func(r BootRun) float64 { return sub(r.Entrypoint, r.InitExec) }),
				EntrypointToRequest: get(func(r BootRun) float64 { return sub(r.FirstRequest, r.Entrypoint) }),
			})
			steps = append(steps, timelineStats(m, v, ok)...)
		}
	}
	return sums, steps
}

// timelineStats summarizes photon-init's timeline steps, plus the spans
// after the boot's own steps: self start (Go runtime and package
// initialisation), the container's start after the containers step, and
// the entrypoint's exec after the supervisor saw it running.
func timelineStats(m vm.Machine, v string, runs []BootRun) []TimelineStepStats {
	names := map[string]bool{}
	for _, r := range runs {
		for s := range r.Timeline {
			names[s] = true
		}
	}
	if len(names) == 0 {
		return nil
	}
	order := make([]string, 0, len(names))
	for s := range names {
		order = append(order, s)
	}
	// Steps in the order they start (median start).
	starts := map[string]Stat{}
	for _, s := range order {
		var xs []float64
		for _, r := range runs {
			if x, ok := r.TimelineStart[s]; ok {
				xs = append(xs, x)
			}
		}
		starts[s] = statOf(xs)
	}
	sort.SliceStable(order, func(i, j int) bool { return starts[order[i]].Median < starts[order[j]].Median })
	var out []TimelineStepStats
	span := func(name string, f func(BootRun) (start, end float64)) {
		var st, d []float64
		for _, r := range runs {
			a, b := f(r)
			if a == 0 || b == 0 {
				continue
			}
			st, d = append(st, a), append(d, b-a)
		}
		if len(d) > 0 {
			out = append(out, TimelineStepStats{Machine: m, Variant: v, Step: name, Start: statOf(st), Seconds: statOf(d)})
		}
	}
	span("(kernel exec of /init → photon-init's first line)", func(r BootRun) (float64, float64) { return r.InitExec, r.SelfStart })
	for _, s := range order {
		var d []float64
		for _, r := range runs {
			if x, ok := r.Timeline[s]; ok {
				d = append(d, x)
			}
		}
		out = append(out, TimelineStepStats{Machine: m, Variant: v, Step: s, Start: starts[s], Seconds: statOf(d)})
	}
	span("(containers step start → container running)", func(r BootRun) (float64, float64) {
		return r.TimelineStart["workload/containers"], r.Running
	})
	span("(container running → entrypoint's first line)", func(r BootRun) (float64, float64) { return r.Running, r.Entrypoint })
	span("(PID-1 exec → DHCP lease applied)", func(r BootRun) (float64, float64) { return r.InitExec, r.DHCPLease })
	return out
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
