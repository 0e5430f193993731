package container

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/moby/profiles/seccomp"
	"github.com/moby/sys/capability"
	libseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// defaultCapabilities is Docker's default capability set.
var defaultCapabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_NET_RAW",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// maskedPaths are the paths made unreadable in a container that is not
// privileged (Docker's list: a file is covered with /dev/null, a directory
// with an empty read-only tmpfs).
var maskedPaths = []string{
	"/proc/asound",
	"/proc/acpi",
	"/proc/interrupts",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/sys/firmware",
	"/sys/devices/virtual/powercap",
}

// readonlyPaths are the paths made read-only in a container that is not
// privileged (Docker's list).
var readonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

// SeccompEnabled says whether this binary was built with seccomp support
// (the "seccomp" build tag, with CGO and libseccomp). Only then do
// containers get Docker's default seccomp profile.
const SeccompEnabled = libseccomp.Enabled

// allCapabilities lists the capabilities a privileged container gets:
// those of the running kernel that photon-init itself holds in its
// bounding set (a container cannot get more), in "CAP_X" form.
func allCapabilities() []string {
	caps, err := capability.ListSupported()
	if err != nil {
		caps = capability.ListKnown()
	}
	own, err := capability.NewPid2(0)
	if err == nil {
		err = own.Load()
	}
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		if err == nil && !own.Get(capability.BOUNDING, c) {
			continue
		}
		out = append(out, "CAP_"+strings.ToUpper(c.String()))
	}
	return out
}

// presentPaths keeps the paths that exist on the running kernel: runc
// skips a masked or read-only path that does not exist, so the spec lists
// only what is applied (and runtimetest, which stops at a missing
// read-only path, can check the rest).
func presentPaths(paths []string) []string {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// capabilities applies cap_add and cap_drop to Docker's default set as
// Docker does: privileged gets every capability; ALL in cap_add starts from
// every capability (less cap_drop); ALL in cap_drop keeps only cap_add.
func capabilities(m *manifest.Container) ([]string, error) {
	known := map[string]bool{"ALL": true}
	for _, c := range capability.ListKnown() {
		known["CAP_"+strings.ToUpper(c.String())] = true
	}
	norm := func(field string, in []string) ([]string, error) {
		out := make([]string, 0, len(in))
		for _, c := range in {
			u := strings.ToUpper(c)
			if u != "ALL" && !strings.HasPrefix(u, "CAP_") {
				u = "CAP_" + u
			}
			if !known[u] {
				return nil, fmt.Errorf("%s: %q is not a capability", field, c)
			}
			out = append(out, u)
		}
		return out, nil
	}
	add, err := norm("cap_add", m.CapAdd)
	if err != nil {
		return nil, err
	}
	drop, err := norm("cap_drop", m.CapDrop)
	if err != nil {
		return nil, err
	}
	var caps []string
	switch {
	case m.Privileged:
		return allCapabilities(), nil
	case slices.Contains(add, "ALL"):
		for _, c := range allCapabilities() {
			if !slices.Contains(drop, c) {
				caps = append(caps, c)
			}
		}
		return caps, nil
	case slices.Contains(drop, "ALL"):
		caps = []string{}
	default:
		for _, c := range defaultCapabilities {
			if !slices.Contains(drop, c) {
				caps = append(caps, c)
			}
		}
	}
	for _, c := range add {
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	return caps, nil
}

// linuxCapabilities gives a root process caps in its bounding, permitted
// and effective sets, and a process of another user only the bounding
// set, as Docker does: execve(2) clears the others for a non-root user
// anyway. None are inheritable or ambient (Docker since 20.10).
func linuxCapabilities(caps []string, uid uint32) *specs.LinuxCapabilities {
	if uid != 0 {
		return &specs.LinuxCapabilities{Bounding: slices.Clone(caps)}
	}
	return &specs.LinuxCapabilities{
		Bounding:  slices.Clone(caps),
		Permitted: slices.Clone(caps),
		Effective: slices.Clone(caps),
	}
}

// seccompProfiles hands out Docker's default seccomp profile, one shared
// copy per capability set: the profile depends on the container's bounding
// capabilities only (and on the machine), and each copy is ~25 KB that
// every container's kept spec would otherwise hold. The profiles handed
// out must not be modified. The zero value is ready; a nil one builds a
// fresh profile each time.
type seccompProfiles struct {
	mu sync.Mutex
	m  map[string]*specs.LinuxSeccomp // by bounding capabilities
}

// profile returns Docker's default profile for spec (whose capabilities
// must be set: some syscalls are allowed by capability), or nil for a
// privileged container or a binary built without seccomp.
func (ps *seccompProfiles) profile(spec *specs.Spec, privileged bool) (*specs.LinuxSeccomp, error) {
	if privileged || !SeccompEnabled {
		return nil, nil
	}
	if ps == nil {
		return defaultSeccompProfile(spec)
	}
	var key string
	if c := spec.Process.Capabilities; c != nil {
		key = strings.Join(c.Bounding, " ")
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p, ok := ps.m[key]; ok {
		return p, nil
	}
	p, err := defaultSeccompProfile(spec)
	if err != nil {
		return nil, err
	}
	if ps.m == nil {
		ps.m = map[string]*specs.LinuxSeccomp{}
	}
	ps.m[key] = p
	return p, nil
}

// defaultSeccompProfile builds Docker's default profile for spec.
func defaultSeccompProfile(spec *specs.Spec) (*specs.LinuxSeccomp, error) {
	p, err := seccomp.GetDefaultProfile(spec)
	if err != nil {
		return nil, fmt.Errorf("Docker's default seccomp profile: %w", err)
	}
	return p, nil
}
