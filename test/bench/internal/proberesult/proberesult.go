// Package proberesult is what the benchmark's probe (test/bench/probe)
// measures inside a VM and prints on the console as one JSON line, and
// what the benchmark decodes from there.
package proberesult

// Prefix starts the probe's result line; the JSON of a Result follows.
const Prefix = "probe: result "

// ErrorPrefix starts the line of a probe that failed; the error follows.
const ErrorPrefix = "probe: error "

// Sample is photon-init's resource use at one moment.
type Sample struct {
	// Uptime is the guest uptime of the sample, in seconds.
	Uptime float64 `json:"uptime_s"`
	// CPU is photon-init's own utime+stime, in seconds.
	CPU float64 `json:"cpu_s"`
	// ChildrenCPU is cutime+cstime: the processes photon-init waited for
	// (container inits and the containers' first processes), in seconds.
	ChildrenCPU float64 `json:"children_cpu_s"`
	// RSSkB and HWMkB are VmRSS and VmHWM.
	RSSkB int64 `json:"vmrss_kb"`
	HWMkB int64 `json:"vmhwm_kb"`
	// AnonkB, FilekB and ShmemkB split VmRSS: RssAnon (heap, stacks),
	// RssFile and RssShmem (the binary's pages: an initramfs is a tmpfs,
	// whose file pages count as shared memory).
	AnonkB  int64 `json:"rss_anon_kb"`
	FilekB  int64 `json:"rss_file_kb"`
	ShmemkB int64 `json:"rss_shmem_kb"`
	// Threads is the number of photon-init's threads.
	Threads int64 `json:"threads"`
	// GuestBusy is the machine's non-idle CPU time (from /proc/stat), in
	// seconds.
	GuestBusy float64 `json:"guest_busy_s"`
}

// Window is the difference between two samples.
type Window struct {
	Seconds float64 `json:"seconds"`
	// CPUPercent is photon-init's own CPU time over the window's length.
	CPUPercent float64 `json:"cpu_percent"`
	// ChildrenCPUPercent is the same for the children it waited for.
	ChildrenCPUPercent float64 `json:"children_cpu_percent"`
	// GuestBusyPercent is the whole machine's.
	GuestBusyPercent float64 `json:"guest_busy_percent"`
	Start            Sample  `json:"start"`
	End              Sample  `json:"end"`
}

// Diff is the window between two samples.
func Diff(a, b Sample) Window {
	w := Window{Seconds: b.Uptime - a.Uptime, Start: a, End: b}
	if w.Seconds > 0 {
		w.CPUPercent = 100 * (b.CPU - a.CPU) / w.Seconds
		w.ChildrenCPUPercent = 100 * (b.ChildrenCPU - a.ChildrenCPU) / w.Seconds
		w.GuestBusyPercent = 100 * (b.GuestBusy - a.GuestBusy) / w.Seconds
	}
	return w
}

// Result is what the probe prints.
type Result struct {
	Mode string `json:"mode"`
	// Containers is how many containers were running, the probe
	// included.
	Containers int `json:"containers"`
	// ManifestsUptime is the guest uptime when photon-init's containers
	// step began (the manifests are loaded there).
	ManifestsUptime float64 `json:"manifests_uptime_s"`
	// AllRunningUptime is the guest uptime of the last container's start
	// (the latest StartedAt the supervisor reports).
	AllRunningUptime float64 `json:"all_running_uptime_s"`
	// Memory is the sample after everything runs and settled (memory).
	Memory *Sample `json:"memory,omitempty"`
	// Idle and Crash are the scale windows.
	Idle  *Window `json:"idle,omitempty"`
	Crash *Window `json:"crash,omitempty"`
	// CrashFirst5s is the first five seconds of the crash window, when
	// the backoff is short and the restarts come fastest.
	CrashFirst5s *Window `json:"crash_first_5s,omitempty"`
	// Restarts counts the crashers' restarts over the crash window.
	Restarts int `json:"restarts,omitempty"`
}
