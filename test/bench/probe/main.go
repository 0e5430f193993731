// Command probe runs inside a benchmark VM as one of photon-init's
// containers and measures photon-init from there, with product features
// only: its manifest bind-mounts the machine's /proc at /hostproc (so
// /hostproc/1 is photon-init, PID 1 of the machine), /run/photon at
// /hostrun (the control socket, for the containers' states and the boot
// timeline) and, for the scale section, a named volume at /ctl shared with
// the crash-looping containers.
//
//	probe memory -total N [-settle 2s]
//	probe scale -total N -crashers M [-settle 5s] [-idle 20s] [-crash 30s]
//
// Both wait until the supervisor reports all N containers (the probe
// included) running. memory then reads photon-init's VmRSS and VmHWM.
// scale measures photon-init's CPU time (utime+stime of /hostproc/1/stat)
// and memory while everything idles, then makes the M crashers crash-loop
// (it creates /ctl/crash and opens /ctl/fifo, which they block on: they
// exit 1, and exit 1 at once on every restart while /ctl/crash exists) and
// measures again. The result is one line on standard output, which the
// host reads on the serial console:
//
//	probe: result {"mode":"scale",...}
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/api/client"
	"github.com/photon-init/photon-init/pkg/boot/timeline"
	pr "github.com/photon-init/photon-init/test/bench/internal/proberesult"
)

// Paths inside the probe's container (see the package comment).
const (
	hostProc = "/hostproc"
	socket   = "/hostrun/photon.sock"
	ctlDir   = "/ctl"
	// clkTck is USER_HZ, the unit of /proc/PID/stat's times (100 on
	// every Linux architecture the project builds for).
	clkTck = 100
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe memory|scale [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	total := fs.Int("total", 1, "containers expected running, the probe included")
	crashers := fs.Int("crashers", 0, "containers named crash-* to make crash-loop (scale)")
	settle := fs.Duration("settle", 2*time.Second, "wait after all are running")
	idle := fs.Duration("idle", 20*time.Second, "idle window (scale)")
	crash := fs.Duration("crash", 30*time.Second, "crash-loop window (scale)")
	timeout := fs.Duration("timeout", 15*time.Minute, "limit for everything to run")
	_ = fs.Parse(os.Args[2:])
	ctx, cancel := context.WithTimeout(context.Background(), *timeout+*idle+*crash+time.Minute)
	defer cancel()
	res, err := run(ctx, os.Args[1], *total, *crashers, *settle, *idle, *crash, *timeout)
	if err != nil {
		fmt.Printf("%s%v\n", pr.ErrorPrefix, err)
		os.Exit(1)
	}
	out, err := json.Marshal(res)
	if err != nil {
		fmt.Printf("%s%v\n", pr.ErrorPrefix, err)
		os.Exit(1)
	}
	fmt.Printf("%s%s\n", pr.Prefix, out)
}

// run measures in the given mode.
func run(ctx context.Context, mode string, total, crashers int, settle, idle, crash, timeout time.Duration) (*pr.Result, error) {
	if mode != "memory" && mode != "scale" {
		return nil, fmt.Errorf("unknown mode %q", mode)
	}
	c := client.New(client.Options{Socket: socket})
	defer c.Close()
	res := &pr.Result{Mode: mode}
	list, err := waitRunning(ctx, c, total, timeout)
	if err != nil {
		return nil, err
	}
	res.Containers = len(list)
	if err := startTimes(ctx, c, list, res); err != nil {
		return nil, err
	}
	time.Sleep(settle)
	if mode == "memory" {
		s, err := sample()
		if err != nil {
			return nil, err
		}
		res.Memory = &s
		return res, nil
	}
	if res.Idle, err = window(idle, nil); err != nil {
		return nil, err
	}
	if crashers == 0 {
		return res, nil
	}
	if err := startCrashing(); err != nil {
		return nil, err
	}
	var first *pr.Window
	if res.Crash, err = window(crash, func(w pr.Window) {
		if first == nil && w.Seconds >= 5 {
			first = &w
		}
	}); err != nil {
		return nil, err
	}
	res.CrashFirst5s = first
	list, err = c.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	for _, ci := range list {
		if strings.HasPrefix(ci.Name, "crash-") {
			res.Restarts += ci.Restarts
		}
	}
	return res, nil
}

// waitRunning polls the supervisor until total containers run.
func waitRunning(ctx context.Context, c *client.Client, total int, timeout time.Duration) ([]api.ContainerInfo, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		list, err := c.List(ctx)
		if err == nil {
			running := 0
			states := map[string]int{}
			for _, ci := range list {
				states[ci.State]++
				if ci.State == "running" {
					running++
				}
			}
			if running >= total {
				return list, nil
			}
			last = fmt.Sprintf("%d of %d running, states %v", running, total, states)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not all running after %v: %s", timeout, last)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// startTimes fills in when the containers step began and when the last
// container started, as guest uptimes.
func startTimes(ctx context.Context, c *client.Client, list []api.ContainerInfo, res *pr.Result) error {
	doc, err := c.Timeline(ctx)
	if err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	for _, s := range doc.Steps {
		if s.Phase == "workload" && s.Name == "containers" {
			res.ManifestsUptime = s.Start.Seconds()
		}
	}
	var last time.Time
	for _, ci := range list {
		if ci.StartedAt.After(last) {
			last = ci.StartedAt
		}
	}
	// The supervisor's times are wall-clock times; the uptime and the
	// wall clock read together convert them.
	now, wall := timeline.Now(), time.Now()
	res.AllRunningUptime = (now - wall.Sub(last)).Seconds()
	return nil
}

// window samples at its start, every second (calling each, if not nil,
// with the window so far) and at its end.
func window(d time.Duration, each func(pr.Window)) (*pr.Window, error) {
	start, err := sample()
	if err != nil {
		return nil, err
	}
	end := time.Now().Add(d)
	for {
		wait := time.Until(end)
		if wait <= 0 {
			break
		}
		time.Sleep(min(wait, time.Second))
		s, err := sample()
		if err != nil {
			return nil, err
		}
		if each != nil {
			each(pr.Diff(start, s))
		}
	}
	s, err := sample()
	if err != nil {
		return nil, err
	}
	w := pr.Diff(start, s)
	return &w, nil
}

// startCrashing makes the crashers exit: /ctl/crash makes every restart
// exit at once, and opening /ctl/fifo (then closing it) ends the read the
// running ones block on.
func startCrashing() error {
	if err := os.WriteFile(ctlDir+"/crash", nil, 0o644); err != nil {
		return fmt.Errorf("crash marker: %w", err)
	}
	f, err := os.OpenFile(ctlDir+"/fifo", os.O_RDWR|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("crashers' fifo: %w", err)
	}
	time.Sleep(200 * time.Millisecond)
	return f.Close()
}

// sample reads photon-init's and the machine's counters from hostProc.
func sample() (pr.Sample, error) { return sampleFrom(hostProc) }

// sampleFrom reads PID 1's and the machine's counters from the proc
// filesystem at root.
func sampleFrom(root string) (pr.Sample, error) {
	s := pr.Sample{Uptime: timeline.Now().Seconds()}
	stat, err := os.ReadFile(root + "/1/stat")
	if err != nil {
		return s, fmt.Errorf("photon-init's stat: %w", err)
	}
	// The fields after the command name (which may hold spaces) start
	// with the state, field 3; utime is field 14.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return s, errors.New("photon-init's stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 15 {
		return s, fmt.Errorf("photon-init's stat: %d fields", len(f)+2)
	}
	ticks := func(k int) float64 {
		n, _ := strconv.ParseInt(f[k-3], 10, 64)
		return float64(n) / clkTck
	}
	s.CPU = ticks(14) + ticks(15)
	s.ChildrenCPU = ticks(16) + ticks(17)
	status, err := statusFields(root+"/1/status", "VmRSS", "VmHWM", "Threads", "RssAnon", "RssFile", "RssShmem")
	if err != nil {
		return s, err
	}
	s.RSSkB, s.HWMkB, s.Threads = status[0], status[1], status[2]
	s.AnonkB, s.FilekB, s.ShmemkB = status[3], status[4], status[5]
	if s.GuestBusy, err = guestBusy(root); err != nil {
		return s, err
	}
	return s, nil
}

// statusFields reads the first number of each named line of a
// /proc/PID/status file.
func statusFields(path string, names ...string) ([]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make([]int64, len(names))
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		for i, n := range names {
			if k == n {
				fs := strings.Fields(v)
				if len(fs) > 0 {
					out[i], _ = strconv.ParseInt(fs[0], 10, 64)
				}
			}
		}
	}
	return out, sc.Err()
}

// guestBusy is the machine's non-idle CPU time from the "cpu" line of
// root/stat, in seconds.
func guestBusy(root string) (float64, error) {
	data, err := os.ReadFile(root + "/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		switch i {
		case 3, 4: // idle, iowait
			continue
		case 8, 9: // guest, guest_nice: already counted in user and nice
			continue
		}
		busy += n
	}
	return float64(busy) / clkTck, nil
}
