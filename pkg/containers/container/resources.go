package container

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/moby/sys/devices"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// cpuPeriod is the CFS period for a cpus limit, in µs (Docker's).
const cpuPeriod = 100000

// rlimits maps a ulimit name to its resource.
var rlimits = map[string]int{
	"as":         unix.RLIMIT_AS,
	"core":       unix.RLIMIT_CORE,
	"cpu":        unix.RLIMIT_CPU,
	"data":       unix.RLIMIT_DATA,
	"fsize":      unix.RLIMIT_FSIZE,
	"locks":      unix.RLIMIT_LOCKS,
	"memlock":    unix.RLIMIT_MEMLOCK,
	"msgqueue":   unix.RLIMIT_MSGQUEUE,
	"nice":       unix.RLIMIT_NICE,
	"nofile":     unix.RLIMIT_NOFILE,
	"nproc":      unix.RLIMIT_NPROC,
	"rss":        unix.RLIMIT_RSS,
	"rtprio":     unix.RLIMIT_RTPRIO,
	"rttime":     unix.RLIMIT_RTTIME,
	"sigpending": unix.RLIMIT_SIGPENDING,
	"stack":      unix.RLIMIT_STACK,
}

// rlimitType is the OCI name of a ulimit: "nofile" → "RLIMIT_NOFILE".
func rlimitType(name string) string { return "RLIMIT_" + strings.ToUpper(name) }

// processRlimits converts the manifest's ulimits, sorted by name. Without
// ulimits the container inherits photon-init's limits.
func processRlimits(u map[string]manifest.Ulimit) ([]specs.POSIXRlimit, error) {
	var out []specs.POSIXRlimit
	for _, name := range slices.Sorted(maps.Keys(u)) {
		l := u[name]
		if _, ok := rlimits[name]; !ok {
			return nil, fmt.Errorf("ulimits: %q is not a ulimit", name)
		}
		soft, hard := l.Soft, l.Hard
		if soft < 0 || hard < 0 || soft > hard {
			return nil, fmt.Errorf("ulimits: %s: soft %d and hard %d must be ≥ 0 with soft ≤ hard", name, soft, hard)
		}
		out = append(out, specs.POSIXRlimit{Type: rlimitType(name), Soft: uint64(soft), Hard: uint64(hard)})
	}
	return out, nil
}

// resources are the cgroup limits: memory, CPU quota (cpus × the 100 ms
// period), pids, and the device rules (deny all, then the manifest's
// devices; runc adds its default devices). Privileged allows every device.
func resources(m *manifest.Container, devs []specs.LinuxDevice, perms []string) *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if m.Privileged {
		r.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	} else {
		r.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
		for i, d := range devs {
			if i >= len(perms) {
				break
			}
			major, minor := d.Major, d.Minor
			r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: d.Type, Major: &major, Minor: &minor, Access: perms[i]})
		}
	}
	if m.MemLimit > 0 {
		limit := m.MemLimit
		r.Memory = &specs.LinuxMemory{Limit: &limit}
	}
	if m.Cpus > 0 {
		period := uint64(cpuPeriod)
		quota := int64(m.Cpus * cpuPeriod)
		if quota < 1000 {
			quota = 1000 // the kernel's minimum quota is 1 ms
		}
		r.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	if m.PidsLimit > 0 {
		limit := m.PidsLimit
		r.Pids = &specs.LinuxPids{Limit: &limit}
	}
	return r
}

// linuxDevices looks up the manifest's devices on the host and, for a
// privileged container, adds every host device. It also returns each
// manifest device's cgroup permissions, in order.
func linuxDevices(m *manifest.Container) ([]specs.LinuxDevice, []string, error) {
	var out []specs.LinuxDevice
	var perms []string
	seen := map[string]bool{}
	for i, d := range m.Devices {
		p := d.Permissions
		if p == "" {
			p = "rwm"
		}
		dev, err := devices.DeviceFromPath(d.HostPath, p)
		if err != nil {
			return nil, nil, fmt.Errorf("devices[%d]: %s: %w", i, d.HostPath, err)
		}
		target := d.ContainerPath
		if target == "" {
			target = d.HostPath
		}
		mode := dev.FileMode
		uid, gid := dev.Uid, dev.Gid
		out = append(out, specs.LinuxDevice{
			Path: target, Type: string(dev.Type), Major: dev.Major, Minor: dev.Minor,
			FileMode: &mode, UID: &uid, GID: &gid,
		})
		perms = append(perms, p)
		seen[target] = true
	}
	if m.Privileged {
		host, err := devices.HostDevices()
		if err != nil {
			return nil, nil, fmt.Errorf("privileged: list the host's devices: %w", err)
		}
		for _, dev := range host {
			if seen[dev.Path] {
				continue
			}
			mode := dev.FileMode
			uid, gid := dev.Uid, dev.Gid
			out = append(out, specs.LinuxDevice{
				Path: dev.Path, Type: string(dev.Type), Major: dev.Major, Minor: dev.Minor,
				FileMode: &mode, UID: &uid, GID: &gid,
			})
		}
	}
	return out, perms, nil
}

// checkSysctls refuses network sysctls for a container that shares the
// machine's network namespace: they would change the machine's.
func checkSysctls(s map[string]string, ownNetns bool) error {
	for _, k := range slices.Sorted(maps.Keys(s)) {
		if strings.HasPrefix(k, "net.") && !ownNetns {
			return fmt.Errorf("sysctls: %s needs the container's own network namespace (network_mode bridge or none), it would change the machine's", k)
		}
	}
	return nil
}
