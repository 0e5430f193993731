package config

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/photon-init/photon-init/pkg/blockdev"
	"github.com/photon-init/photon-init/pkg/mounts"
)

// DefaultDeviceTimeout is how long a mount waits for its disk (or its
// 9p/virtiofs tag) when the entry gives no timeout.
const DefaultDeviceTimeout = 10 * time.Second

// Mount is one entry of init.yaml's "mounts:" list: a filesystem mounted at
// boot, after the kernel modules are loaded and before the network and the
// containers start. Entries are mounted in order.
type Mount struct {
	// Source is LABEL=, UUID=, PARTUUID=, PARTLABEL= or a /dev path for a
	// filesystem on a disk; the mount tag for 9p and virtiofs; anything
	// (or nothing) for tmpfs and overlay.
	Source string `yaml:"source"`
	// Target is the absolute mount point, created if missing.
	Target string `yaml:"target"`
	// Type is auto (the default: from the disk's superblock), ext2,
	// ext3, ext4, xfs, vfat, btrfs, 9p, virtiofs, tmpfs or overlay.
	Type string `yaml:"type"`
	// Options are fstab options, comma-separated ("noatime,nodev").
	Options string `yaml:"options"`
	// Timeout is how long to wait for the disk or tag to appear ("10s",
	// the default; "0s" looks once).
	Timeout string `yaml:"timeout"`
	// MkfsIfEmpty formats the disk with this filesystem when it is blank
	// (first boot of a new data disk); it needs mkfs.TYPE in the
	// initramfs.
	MkfsIfEmpty string `yaml:"mkfs_if_empty"`
	// Required: the machine cannot run without this mount; when it fails
	// the boot stops in the emergency state (with the debug shell on the
	// console) instead of going on without it.
	Required bool `yaml:"required"`
}

// Root is init.yaml's "root:": a real root filesystem to switch to from the
// initramfs. photon.root= on the kernel command line gives or overrides
// its source.
type Root struct {
	// Source names the root's disk: LABEL=, UUID=, PARTUUID=, PARTLABEL=
	// or a /dev path.
	Source string `yaml:"source"`
	// Type is auto (the default) or a disk filesystem type.
	Type string `yaml:"type"`
	// Options are fstab options for the root ("rw" by default).
	Options string `yaml:"options"`
	// Timeout is how long to wait for the disk ("10s" by default).
	Timeout string `yaml:"timeout"`
}

// Entry returns the mount as package mounts takes it.
func (m Mount) Entry() mounts.Entry {
	return mounts.Entry{
		Source: m.Source, Target: m.Target, Type: m.Type, Options: m.Options,
		Timeout: timeoutOrDefault(m.Timeout), MkfsIfEmpty: m.MkfsIfEmpty,
		Required: m.Required,
	}
}

// Entry returns the root as package mounts takes it, mounted on target.
func (r Root) Entry(target string) mounts.Entry {
	return mounts.Entry{Source: r.Source, Target: target, Type: r.Type, Options: r.Options, Timeout: timeoutOrDefault(r.Timeout)}
}

// timeoutOrDefault parses a validated timeout; "" is the default.
func timeoutOrDefault(s string) time.Duration {
	if d, err := time.ParseDuration(s); err == nil {
		return d
	}
	return DefaultDeviceTimeout
}

// reservedTargets are mount points photon-init itself owns.
var reservedTargets = map[string]string{
	"/":     "the root is switched to with root: or photon.root=",
	"/proc": "photon-init mounts it", "/sys": "photon-init mounts it",
	"/dev": "photon-init mounts it", "/run": "photon-init mounts it",
}

// validateMounts checks the mounts and root sections.
func (c *Config) validateMounts(root *yaml.Node, add func(line int, format string, a ...any)) {
	type seen struct {
		target string
		line   int
	}
	var earlier []seen
	for i, m := range c.Mounts {
		idx := strconv.Itoa(i)
		at := func(field string) int {
			if l := lineOf(root, "mounts", idx, field); l > 0 {
				return l
			}
			return lineOf(root, "mounts", idx)
		}
		name := "mounts[" + idx + "]"
		if m.Target == "" {
			add(at(""), "%s: target is required", name)
		}
		if why, ok := reservedTargets[m.Target]; ok {
			add(at("target"), "%s.target: %s cannot be mounted here: %s", name, m.Target, why)
		}
		if m.Source == "" && m.Entry().OnDisk() {
			add(at(""), "%s: source is required (LABEL=, UUID=, PARTUUID=, PARTLABEL= or a /dev path)", name)
		}
		if err := checkTimeout(m.Timeout); err != nil {
			add(at("timeout"), "%s.timeout: %v", name, err)
		}
		if m.Timeout != "" && !m.Entry().Waits() {
			add(at("timeout"), "%s.timeout: a %s mount waits for nothing", name, m.Type)
		}
		for _, p := range m.Entry().Problems() {
			if (p.Field == "source" && m.Source == "") || (p.Field == "target" && m.Target == "") || p.Field == "timeout" {
				continue // reported above
			}
			add(at(p.Field), "%s.%s: %v", name, p.Field, p.Err)
		}
		if m.Target != "" && path.IsAbs(m.Target) {
			if dup := slices.IndexFunc(earlier, func(e seen) bool { return e.target == m.Target }); dup >= 0 {
				add(at("target"), "%s.target: %s is mounted already by the entry at line %d", name, m.Target, earlier[dup].line)
			} else if below := slices.IndexFunc(earlier, func(e seen) bool {
				return strings.HasPrefix(e.target, strings.TrimSuffix(m.Target, "/")+"/")
			}); below >= 0 {
				e := earlier[below]
				add(at("target"), "%s.target: %s would hide %s, mounted before it (line %d): list %s first", name, m.Target, e.target, e.line, m.Target)
			}
			earlier = append(earlier, seen{m.Target, at("target")})
		}
	}
	if c.Root == nil {
		return
	}
	at := func(field string) int {
		if l := lineOf(root, "root", field); l > 0 {
			return l
		}
		return lineOf(root, "root")
	}
	if c.Root.Source == "" {
		add(at(""), "root: source is required (LABEL=, UUID=, PARTUUID=, PARTLABEL= or a /dev path)")
	}
	if err := checkTimeout(c.Root.Timeout); err != nil {
		add(at("timeout"), "root.timeout: %v", err)
	}
	e := c.Root.Entry("/sysroot")
	if !e.OnDisk() {
		add(at("type"), "root.type: %q is not a filesystem on a disk (auto, %s)", c.Root.Type, strings.Join(mounts.MkfsTypes(), ", "))
		return
	}
	for _, p := range e.Problems() {
		if (p.Field == "source" && c.Root.Source == "") || p.Field == "timeout" {
			continue // reported above
		}
		add(at(p.Field), "root.%s: %v", p.Field, p.Err)
	}
}

// checkTimeout accepts "" and Go durations that are not negative.
func checkTimeout(s string) error {
	if s == "" {
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (10s, 500ms, 1m)", s)
	}
	if d < 0 {
		return fmt.Errorf("%q is negative", s)
	}
	return nil
}

// ValidRootSpec reports whether s can name a root disk (photon.root=).
func ValidRootSpec(s string) error {
	_, err := blockdev.ParseSpec(s)
	return err
}
