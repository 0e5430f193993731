package vm

import (
	"regexp"
	"time"
)

// Console patterns of the photon-init contract (and of the baseline init,
// which prints its boot-complete line in the same form). They are
// compiled once and only read.
var (
	// PhotonStart matches photon-init's first line,
	// "photon-init VERSION starting as PID 1"; group 1 is the version.
	PhotonStart = regexp.MustCompile(`photon-init (\S+) starting as PID 1`)
	// PhotonStartUptime matches the same line's "(uptime 0.612s)" suffix;
	// group 1 is the guest uptime in seconds.
	PhotonStartUptime = regexp.MustCompile(`photon-init \S+ starting as PID 1 \(uptime (\d+(?:\.\d+)?)s\)`)
	// BaselineStartUptime matches the baseline init's first line; group 1
	// is the guest uptime in seconds.
	BaselineStartUptime = regexp.MustCompile(`baseline: pid1 start uptime (\d+(?:\.\d+)?)s`)
	// BootComplete matches "boot complete: 1.052s since kernel start,
	// 0.640s since PID-1 start"; groups 1 and 2 are the two durations.
	BootComplete = regexp.MustCompile(`boot complete: (\d+(?:\.\d+)?)s since kernel start, (\d+(?:\.\d+)?)s since PID-1 start`)
	// KernelPanic matches the kernel's panic messages, which no test may
	// show (QEMU exits 0 after them all the same).
	KernelPanic = regexp.MustCompile(`Kernel panic|Attempted to kill init`)
)

// BootTimes are the durations a boot-complete line reports.
type BootTimes struct {
	// SinceKernel is the guest uptime at boot complete.
	SinceKernel time.Duration
	// SincePID1 is the time from PID 1's start to boot complete.
	SincePID1 time.Duration
}

// ParseBootComplete extracts the durations from a boot-complete line.
func ParseBootComplete(line string) (BootTimes, bool) {
	m := BootComplete.FindStringSubmatch(line)
	if m == nil {
		return BootTimes{}, false
	}
	k, ok1 := parseSeconds(m[1])
	p, ok2 := parseSeconds(m[2])
	return BootTimes{SinceKernel: k, SincePID1: p}, ok1 && ok2
}

// ParseUptime extracts the uptime that re's first group captures from
// line (PhotonStartUptime, BaselineStartUptime).
func ParseUptime(re *regexp.Regexp, line string) (time.Duration, bool) {
	m := re.FindStringSubmatch(line)
	if len(m) < 2 {
		return 0, false
	}
	return parseSeconds(m[1])
}

// parseSeconds turns "1.052" into a duration, exactly.
func parseSeconds(s string) (time.Duration, bool) {
	d, err := time.ParseDuration(s + "s")
	return d, err == nil
}
