package container

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// defaultMounts are the API filesystems every container gets, in order:
// Docker's set and options. /sys and the cgroup tree are read-only unless
// the container is privileged.
func defaultMounts(privileged bool) []specs.Mount {
	sysMode := "ro"
	if privileged {
		sysMode = "rw"
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", sysMode}},
		{Destination: "/sys/fs/cgroup", Type: cgroupMountType(), Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", sysMode}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
	}
}

// cgroupMountType is the type of the /sys/fs/cgroup mount: "cgroup2" on
// a cgroup v2 machine, where the container (in its own cgroup namespace)
// gets a cgroup2 mount of its own cgroup, and runc's "cgroup" on a v1
// machine, where runc builds a tmpfs with one mount per hierarchy.
func cgroupMountType() string {
	if cgroups.IsCgroup2UnifiedMode() {
		return "cgroup2"
	}
	return "cgroup"
}

// bindOptions are the options of a bind mount: recursive, private, and
// read-only on request. The mount's Type is left empty: runc ignores it
// for bind mounts, and runtimetest then checks them like other mounts.
func bindOptions(ro bool) []string {
	o := []string{"rbind", "rprivate"}
	if ro {
		o = append(o, "ro")
	}
	return o
}

// volumeKind says how a volume's host directory comes to be.
type volumeKind int

const (
	// volumeHost is a bind of a host path, created (empty) when missing.
	volumeHost volumeKind = iota
	// volumeData is a named or anonymous volume: created on first use and
	// filled with what the image has at the target.
	volumeData
)

// volume is a directory to prepare on the host before the container
// starts.
type volume struct {
	kind   volumeKind
	source string // host path
	target string // path in the container
}

// anonymousVolumeDir is where the anonymous volume for target lives under
// the container's volumes directory: the target path escaped into one file
// name ("/var/lib/data" → "var%2Flib%2Fdata").
func anonymousVolumeDir(dir, target string) string {
	return filepath.Join(dir, url.PathEscape(strings.TrimPrefix(target, "/")))
}

// userMounts turns the manifest's volumes and tmpfs entries, and the
// image's volumes, into mounts (Docker's rules: the manifest's mount at a
// path wins over the image's volume there), and lists the host directories
// they need.
func userMounts(m *manifest.Container, imageVolumes []string, l *layout) ([]specs.Mount, []volume, error) {
	var mounts []specs.Mount
	var vols []volume
	used := map[string]string{} // target → what mounts there, for errors
	claim := func(target, what string) error {
		t := path.Clean(target)
		if !path.IsAbs(t) || t == "/" {
			return fmt.Errorf("%s: mount target %q must be an absolute path other than /", what, target)
		}
		if prev, ok := used[t]; ok {
			return fmt.Errorf("%s: %s is already the target of %s", what, t, prev)
		}
		used[t] = what
		return nil
	}
	for i, v := range m.Volumes {
		what := fmt.Sprintf("volumes[%d]", i)
		if err := claim(v.Target, what); err != nil {
			return nil, nil, err
		}
		target := path.Clean(v.Target)
		switch v.Type {
		case manifest.VolumeBind:
			if !filepath.IsAbs(v.Source) {
				return nil, nil, fmt.Errorf("%s: host path %q is not absolute", what, v.Source)
			}
			vols = append(vols, volume{volumeHost, v.Source, target})
			mounts = append(mounts, specs.Mount{Destination: target, Source: v.Source, Options: bindOptions(v.ReadOnly)})
		case manifest.VolumeNamed:
			if !manifest.ValidName(v.Source) {
				return nil, nil, fmt.Errorf("%s: %q is not a volume name", what, v.Source)
			}
			src := filepath.Join(l.namedVolumes, v.Source)
			vols = append(vols, volume{volumeData, src, target})
			mounts = append(mounts, specs.Mount{Destination: target, Source: src, Options: bindOptions(v.ReadOnly)})
		case manifest.VolumeNoName:
			src := anonymousVolumeDir(l.anonVolumes, target)
			vols = append(vols, volume{volumeData, src, target})
			mounts = append(mounts, specs.Mount{Destination: target, Source: src, Options: bindOptions(v.ReadOnly)})
		case manifest.VolumeTmpfs:
			mounts = append(mounts, tmpfsMount(v, nil))
		default:
			return nil, nil, fmt.Errorf("%s: unknown volume type %q", what, v.Type)
		}
	}
	for i, entry := range m.Tmpfs {
		what := fmt.Sprintf("tmpfs[%d]", i)
		v, rest, err := manifest.ParseTmpfs(entry)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		if err := claim(v.Target, what); err != nil {
			return nil, nil, err
		}
		mounts = append(mounts, tmpfsMount(v, rest))
	}
	for _, target := range imageVolumes {
		t := path.Clean(target)
		if _, ok := used[t]; ok || !path.IsAbs(t) || t == "/" {
			continue
		}
		used[t] = "the image's volume"
		src := anonymousVolumeDir(l.anonVolumes, t)
		vols = append(vols, volume{volumeData, src, t})
		mounts = append(mounts, specs.Mount{Destination: t, Source: src, Options: bindOptions(false)})
	}
	return mounts, vols, nil
}

// tmpfsMount is a tmpfs at v.Target: nosuid, nodev and noexec as Docker's
// --tmpfs, then the entry's own options (which may say exec).
func tmpfsMount(v manifest.Volume, rest []string) specs.Mount {
	o := []string{"nosuid", "nodev", "noexec"}
	if v.TmpfsSize > 0 {
		o = append(o, "size="+strconv.FormatInt(v.TmpfsSize, 10))
	}
	if v.TmpfsMode != 0 {
		o = append(o, "mode="+strconv.FormatUint(uint64(v.TmpfsMode), 8))
	}
	if v.ReadOnly {
		o = append(o, "ro")
	}
	o = append(o, rest...)
	return specs.Mount{Destination: path.Clean(v.Target), Type: "tmpfs", Source: "tmpfs", Options: o}
}

// generatedMounts bind the generated /etc/hostname, /etc/hosts and
// /etc/resolv.conf, read-write as in Docker, and the notify socket's
// directory, read-only (sending to a socket needs no writable mount).
func generatedMounts(l *layout) []specs.Mount {
	return []specs.Mount{
		{Destination: "/etc/hostname", Source: l.hostname, Options: bindOptions(false)},
		{Destination: "/etc/hosts", Source: l.hosts, Options: bindOptions(false)},
		{Destination: "/etc/resolv.conf", Source: l.resolvConf, Options: bindOptions(false)},
		{Destination: NotifySocketDir, Source: l.notifyDir, Options: append(bindOptions(true), "nosuid", "nodev", "noexec")},
	}
}

// allMounts orders the mounts: the API filesystems first (less those a
// user mount replaces), then the others by the depth of their target so
// that a parent is mounted before what is mounted inside it (Docker's
// order); the generated mounts are left out where a user mount provides
// them.
func allMounts(defaults, generated, user []specs.Mount) []specs.Mount {
	taken := map[string]bool{}
	for _, m := range user {
		taken[m.Destination] = true
	}
	var out []specs.Mount
	for _, m := range defaults {
		if !taken[m.Destination] {
			out = append(out, m)
		}
	}
	rest := slices.Clone(user)
	for _, m := range generated {
		if !taken[m.Destination] {
			rest = append(rest, m)
		}
	}
	slices.SortStableFunc(rest, func(a, b specs.Mount) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
	return append(out, rest...)
}
