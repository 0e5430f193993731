package mounts

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/blockdev"
)

// Entry is one filesystem the machine mounts at boot: an init.yaml
// "mounts:" entry, or the real root of a switch_root.
type Entry struct {
	// Source names what is mounted: for filesystems on disks LABEL=,
	// UUID=, PARTUUID=, PARTLABEL= or a /dev path; for 9p and virtiofs
	// the mount tag; for tmpfs and overlay anything (default: the type).
	Source string
	// Target is the absolute mount point, created if missing.
	Target string
	// Type is a filesystem type (see Types), or "auto" (or "") to take
	// it from the device's superblock.
	Type string
	// Options are fstab-style options (see ParseOptions).
	Options string
	// Timeout bounds the wait for the device (or the 9p/virtiofs tag)
	// to appear; zero looks once.
	Timeout time.Duration
	// MkfsIfEmpty formats a blank device with this filesystem type
	// before mounting it (see MkfsTypes).
	MkfsIfEmpty string
	// Required marks a mount the machine cannot run without: MountAll's
	// error for it matches ErrRequiredFailed (the boot drops to its
	// emergency state instead of going on).
	Required bool
}

// ErrRequiredFailed is matched (errors.Is) by MountAll's error when an entry
// marked Required failed.
var ErrRequiredFailed = errors.New("a required mount failed")

// requiredError is the error of a failed required entry.
type requiredError struct{ err error }

func (e requiredError) Error() string        { return "required mount " + e.err.Error() }
func (e requiredError) Unwrap() error        { return e.err }
func (e requiredError) Is(target error) bool { return target == ErrRequiredFailed }

// Filesystem types an Entry may name, by where their source comes from.
var (
	diskTypes    = []string{"ext2", "ext3", "ext4", "xfs", "vfat", "btrfs"}
	tagTypes     = []string{"9p", "virtiofs"}
	virtualTypes = []string{"tmpfs", "overlay"}
)

// Types returns the filesystem types an Entry may name, "auto" first.
func Types() []string {
	return append(append(append([]string{"auto"}, diskTypes...), tagTypes...), virtualTypes...)
}

// MkfsTypes returns the types MkfsIfEmpty accepts.
func MkfsTypes() []string { return append([]string(nil), diskTypes...) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// OnDisk reports whether the entry's filesystem lives on a block device
// (its type is auto or a disk filesystem).
func (e Entry) OnDisk() bool {
	return e.Type == "" || e.Type == "auto" || contains(diskTypes, e.Type)
}

// Waits reports whether the entry waits for something to appear: a disk
// or a 9p/virtiofs tag.
func (e Entry) Waits() bool { return e.OnDisk() || contains(tagTypes, e.Type) }

// Problem is something wrong with one field of an Entry.
type Problem struct {
	// Field is the init.yaml key: source, target, type, options, timeout
	// or mkfs_if_empty.
	Field string
	Err   error
}

// Problems reports what is wrong with the entry, field by field, without
// looking at the machine: a target that is not a clean absolute path, an
// unknown type, a source of the wrong form for the type, bad options, a
// mkfs_if_empty that cannot apply or cannot give the filesystem the label
// or UUID the source names.
func (e Entry) Problems() []Problem {
	var ps []Problem
	add := func(field string, format string, a ...any) {
		ps = append(ps, Problem{Field: field, Err: fmt.Errorf(format, a...)})
	}
	if !filepath.IsAbs(e.Target) || filepath.Clean(e.Target) != e.Target {
		add("target", "%q is not a clean absolute path", e.Target)
	}
	typ := e.Type
	if typ == "" {
		typ = "auto"
	}
	opts, err := ParseOptions(e.Options)
	if err != nil {
		ps = append(ps, Problem{Field: "options", Err: err})
	}
	switch {
	case !contains(Types(), typ):
		add("type", "%q is not one of %s", e.Type, strings.Join(Types(), ", "))
	case e.OnDisk():
		if _, err := blockdev.ParseSpec(e.Source); err != nil {
			ps = append(ps, Problem{Field: "source", Err: err})
		}
	case contains(tagTypes, typ):
		if e.Source == "" || strings.ContainsAny(e.Source, " \t\n,=/") {
			add("source", "%q is not a %s mount tag", e.Source, typ)
		}
	case typ == "overlay" && err == nil && !opts.HasData("lowerdir"):
		add("options", "overlay needs a lowerdir= option")
	}
	if e.MkfsIfEmpty != "" {
		switch {
		case !contains(MkfsTypes(), e.MkfsIfEmpty):
			add("mkfs_if_empty", "%q is not one of %s", e.MkfsIfEmpty, strings.Join(MkfsTypes(), ", "))
		case !e.OnDisk():
			add("mkfs_if_empty", "needs a filesystem on a disk, not %s", typ)
		case typ != "auto" && typ != e.MkfsIfEmpty:
			add("mkfs_if_empty", "%s contradicts type %s", e.MkfsIfEmpty, typ)
		default:
			if spec, err := blockdev.ParseSpec(e.Source); err == nil {
				if err := checkMkfsName(e.MkfsIfEmpty, spec); err != nil {
					ps = append(ps, Problem{Field: "mkfs_if_empty", Err: err})
				}
			}
		}
	}
	if e.Timeout < 0 {
		add("timeout", "%v is negative", e.Timeout)
	}
	return ps
}

// Check returns the entry's Problems as one error, or nil.
func (e Entry) Check() error {
	var errs []error
	for _, p := range e.Problems() {
		errs = append(errs, fmt.Errorf("%s: %w", p.Field, p.Err))
	}
	return errors.Join(errs...)
}

// Mounted is what Mount did.
type Mounted struct {
	Entry Entry
	// Device is the block device mounted (nil for tmpfs, 9p, ...).
	Device *blockdev.Device
	// Type is the filesystem type given to mount(2).
	Type string
	// Formatted is true when the device was formatted first.
	Formatted bool
	// ReadOnly is true when a device that refused a read-write mount was
	// mounted read-only.
	ReadOnly bool
}

// String renders the mount for the console:
// `LABEL=photon-data: /dev/vdb (ext4 "photon-data") on /var/lib/photon`,
// `tmpfs on /scratch`, `9p share on /mnt/share`.
func (m Mounted) String() string {
	var s string
	switch {
	case m.Device == nil && (m.Entry.Source == "" || m.Entry.Source == m.Type):
		s = m.Type
	case m.Device == nil:
		s = m.Type + " " + m.Entry.Source
	default:
		if m.Entry.Source != m.Device.Path {
			s = m.Entry.Source + ": "
		}
		s += m.Device.Path + " (" + m.Type
		if m.Device.Label != "" {
			s += fmt.Sprintf(" %q", m.Device.Label)
		}
		s += ")"
	}
	s += " on " + m.Entry.Target
	if m.Formatted {
		s += ", formatted"
	}
	if m.ReadOnly {
		s += ", read-only (the device refused read-write)"
	}
	return s
}

// Mounter mounts Entries. It remembers the devices it used, so that two
// entries never format or mount the same blank disk.
type Mounter struct {
	// Log receives what the mounter decides (formatting, fallbacks).
	Log *slog.Logger
	// Devices finds block devices; nil means one over /sys and /dev.
	Devices *blockdev.Scanner
	// Root is prefixed to every target ("" for the machine's root).
	Root string
	// LoadFilesystem loads the kernel module of a filesystem type the
	// kernel does not list in /proc/filesystems (the "fs-TYPE" alias);
	// nil loads nothing.
	LoadFilesystem func(ctx context.Context, fstype string) error
	// Run runs a formatting command to its end. photon-init's PID 1 runs
	// it through its reaper; nil runs it with os/exec, which only a
	// process that is not PID 1 may do.
	Run func(ctx context.Context, cmd *exec.Cmd) error
	// BlankSettle is how long a LABEL= or UUID= entry with MkfsIfEmpty
	// waits for a disk carrying its name before it takes a blank disk
	// (default DefaultBlankSettle).
	BlankSettle time.Duration

	mu   sync.Mutex
	used map[string]bool // device names mounted or formatted by this Mounter
}

// DefaultBlankSettle is Mounter.BlankSettle's default.
const DefaultBlankSettle = 500 * time.Millisecond

func (m *Mounter) log() *slog.Logger {
	if m.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Log
}

func (m *Mounter) devices() *blockdev.Scanner {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Devices == nil {
		m.Devices = blockdev.NewScanner("/sys", "/dev")
	}
	return m.Devices
}

func (m *Mounter) markUsed(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used == nil {
		m.used = map[string]bool{}
	}
	m.used[name] = true
}

func (m *Mounter) isUsed(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used[name]
}

// MountAll mounts the entries in order. A failed entry does not stop the
// others; its target gets an empty read-only tmpfs instead (a "guard"), so
// that nothing meant for a missing disk is silently written into memory: a
// container whose volume lives there fails to start and says why. The
// errors of all failed entries are returned joined, each naming its source
// and target.
func (m *Mounter) MountAll(ctx context.Context, entries []Entry) ([]Mounted, error) {
	var done []Mounted
	var errs []error
	for _, e := range entries {
		res, err := m.Mount(ctx, e)
		if err == nil {
			done = append(done, res)
			continue
		}
		err = fmt.Errorf("%s on %s: %w", e.Source, e.Target, err)
		if gerr := m.guard(e.Target); gerr != nil {
			m.log().Debug("mounts: no guard", "target", e.Target, "err", gerr)
		} else {
			err = fmt.Errorf("%w; %s is left empty and read-only", err, e.Target)
		}
		if e.Required {
			err = requiredError{err}
		}
		errs = append(errs, err)
	}
	return done, errors.Join(errs...)
}

// guard mounts an empty read-only tmpfs on target, unless something is
// mounted there already.
func (m *Mounter) guard(target string) error {
	p := filepath.Join(m.Root, target)
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	return unix.Mount("photon-missing", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0555,size=4k")
}

// Mount mounts one entry: it waits for the device (or tag), formats a
// blank device when asked, detects the filesystem type when it is auto,
// loads the filesystem's module if the kernel lacks it and mounts.
func (m *Mounter) Mount(ctx context.Context, e Entry) (Mounted, error) {
	if err := e.Check(); err != nil {
		return Mounted{}, err
	}
	opts, _ := ParseOptions(e.Options)
	target := filepath.Join(m.Root, e.Target)
	if !e.OnDisk() {
		return m.mountOther(ctx, e, opts, target)
	}
	spec, _ := blockdev.ParseSpec(e.Source)
	dev, formatted, err := m.device(ctx, e, spec)
	if err != nil {
		return Mounted{}, err
	}
	res := Mounted{Entry: e, Device: &dev, Formatted: formatted, Type: e.Type}
	if e.Type == "" || e.Type == "auto" {
		if res.Type, err = mountType(dev); err != nil {
			return Mounted{}, err
		}
	}
	if err := m.ensureFilesystem(ctx, res.Type); err != nil {
		return Mounted{}, err
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return Mounted{}, fmt.Errorf("mount point: %w", err)
	}
	err = unix.Mount(dev.Path, target, res.Type, opts.Flags, opts.Data)
	if (errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES)) && opts.Flags&unix.MS_RDONLY == 0 {
		// As mount(8) does: a write-protected device mounts read-only.
		if rerr := unix.Mount(dev.Path, target, res.Type, opts.Flags|unix.MS_RDONLY, opts.Data); rerr == nil {
			err, res.ReadOnly = nil, true
		}
	}
	if err != nil {
		hint := ""
		if dev.Type != "" && res.Type != dev.Type && !(isExt(res.Type) && isExt(dev.Type)) {
			hint = fmt.Sprintf(" (its superblock says %s)", dev.Type)
		}
		return Mounted{}, fmt.Errorf("mount %s (%s) on %s: %w%s", dev.Path, res.Type, target, err, hint)
	}
	m.markUsed(dev.Name)
	return res, nil
}

func isExt(t string) bool { return t == "ext2" || t == "ext3" || t == "ext4" }

// mountType is the type to mount a device as, from its superblock. ext2 and
// ext3 are mounted by the ext4 driver (kernels built the usual way have no
// other).
func mountType(dev blockdev.Device) (string, error) {
	switch {
	case dev.ProbeErr != nil:
		return "", dev.ProbeErr
	case dev.Type == "" && dev.Partitioned:
		return "", fmt.Errorf("%s holds a partition table, not a filesystem: name one of its partitions", dev.Path)
	case dev.Type == "":
		return "", fmt.Errorf("%s: unknown filesystem (no signature photon-init knows; give type: or use mkfs_if_empty for a blank disk)", dev.Path)
	case !contains(diskTypes, dev.Type):
		return "", fmt.Errorf("%s holds %s, not a filesystem photon-init mounts", dev.Path, dev.Type)
	case isExt(dev.Type):
		return "ext4", nil
	}
	return dev.Type, nil
}

// device finds the entry's device, formatting it first when it is blank
// and the entry asks for that.
func (m *Mounter) device(ctx context.Context, e Entry, spec blockdev.Spec) (blockdev.Device, bool, error) {
	if e.MkfsIfEmpty != "" && (spec.Key == "LABEL" || spec.Key == "UUID") {
		return m.deviceOrBlank(ctx, e, spec)
	}
	dev, err := m.devices().Find(ctx, spec, e.Timeout)
	if err != nil {
		return dev, false, err
	}
	if e.MkfsIfEmpty == "" || dev.Type != "" || dev.ProbeErr != nil || dev.Partitioned {
		return dev, false, nil
	}
	blank, err := blockdev.Blank(dev.Path)
	if err != nil {
		return dev, false, err
	}
	if !blank {
		return dev, false, fmt.Errorf("%s has no filesystem photon-init knows and is not blank (its first or last MiB holds data): not formatting it", dev.Path)
	}
	dev, err = m.format(ctx, e, spec, dev)
	return dev, err == nil, err
}

// deviceOrBlank waits for the device carrying the entry's label or UUID;
// when none has appeared after BlankSettle, it formats the first blank,
// unused whole disk with that label or UUID instead.
func (m *Mounter) deviceOrBlank(ctx context.Context, e Entry, spec blockdev.Spec) (blockdev.Device, bool, error) {
	settle := m.BlankSettle
	if settle <= 0 {
		settle = DefaultBlankSettle
	}
	// Leave time within the timeout to look for a blank disk.
	settle = min(settle, e.Timeout/2)
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, e.Timeout)
	defer cancel()
	blank := map[string]bool{} // probed once per device and call
	var found, candidate blockdev.Device
	var last []blockdev.Device
	err := m.devices().Poll(wctx, func(devs []blockdev.Device) (bool, error) {
		last = devs
		var matches []blockdev.Device
		for _, d := range devs {
			if spec.Matches(d) {
				matches = append(matches, d)
			}
		}
		if len(matches) > 1 {
			return true, fmt.Errorf("%s: %d devices match", spec, len(matches))
		}
		if len(matches) == 1 {
			found = matches[0]
			return true, nil
		}
		if time.Since(start) < settle {
			return false, nil
		}
		inUse := mountedDevices()
		for _, d := range devs {
			if d.Partition != 0 || d.Partitioned || d.Type != "" || d.ProbeErr != nil || d.ReadOnly || m.isUsed(d.Name) || inUse[devNum(d)] {
				continue
			}
			b, ok := blank[d.Name]
			if !ok {
				b, _ = blockdev.Blank(d.Path)
				blank[d.Name] = b
			}
			if b {
				candidate = d
				return true, nil
			}
		}
		return false, nil
	})
	switch {
	case found.Name != "":
		return found, false, nil
	case candidate.Name != "":
		m.log().Info(fmt.Sprintf("mounts: no device has %s; formatting the blank disk %s (mkfs_if_empty: %s)", spec, candidate.Path, e.MkfsIfEmpty))
		dev, err := m.format(ctx, e, spec, candidate)
		return dev, err == nil, err
	case err != nil && !errors.Is(err, context.DeadlineExceeded):
		return blockdev.Device{}, false, err
	}
	return blockdev.Device{}, false, fmt.Errorf("%w; no blank disk to format either", &blockdev.NotFoundError{Spec: spec, Waited: time.Since(start), Seen: last})
}

// devNum is a device's "major:minor".
func devNum(d blockdev.Device) string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// mountedDevices returns the "major:minor" of every mounted filesystem.
func mountedDevices() map[string]bool {
	ms, err := mountinfo.GetMounts(nil)
	out := map[string]bool{}
	if err != nil {
		return out
	}
	for _, mi := range ms {
		out[fmt.Sprintf("%d:%d", mi.Major, mi.Minor)] = true
	}
	return out
}

// mountOther mounts tmpfs, overlay, 9p and virtiofs. A 9p or virtiofs tag
// that is not there yet (ENOENT) is retried until the entry's timeout.
func (m *Mounter) mountOther(ctx context.Context, e Entry, opts Options, target string) (Mounted, error) {
	source := e.Source
	if source == "" {
		source = e.Type
	}
	switch e.Type {
	case "overlay":
		for _, dir := range []string{"upperdir", "workdir"} {
			if p, ok := opts.DataValue(dir); ok {
				if err := os.MkdirAll(p, 0o755); err != nil {
					return Mounted{}, fmt.Errorf("overlay %s: %w", dir, err)
				}
			}
		}
	case "9p":
		// virtio transport and the Linux protocol unless told otherwise.
		for _, def := range []string{"trans=virtio", "version=9p2000.L"} {
			if name, _, _ := strings.Cut(def, "="); !opts.HasData(name) {
				opts.Data = strings.TrimPrefix(opts.Data+","+def, ",")
			}
		}
	}
	if err := m.ensureFilesystem(ctx, e.Type); err != nil {
		return Mounted{}, err
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return Mounted{}, fmt.Errorf("mount point: %w", err)
	}
	deadline := time.Now().Add(e.Timeout)
	for {
		err := unix.Mount(source, target, e.Type, opts.Flags, opts.Data)
		if err == nil {
			return Mounted{Entry: e, Type: e.Type}, nil
		}
		if !errors.Is(err, unix.ENOENT) || !contains(tagTypes, e.Type) || time.Now().After(deadline) {
			return Mounted{}, fmt.Errorf("mount %s %s on %s: %w", e.Type, source, target, err)
		}
		select {
		case <-ctx.Done():
			return Mounted{}, fmt.Errorf("mount %s %s on %s: %w", e.Type, source, target, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ensureFilesystem loads the filesystem's module when /proc/filesystems
// does not list it (there is no modprobe for the kernel to call).
func (m *Mounter) ensureFilesystem(ctx context.Context, fstype string) error {
	have, err := kernelFilesystems()
	if err != nil || have[fstype] || m.LoadFilesystem == nil {
		return nil // without /proc, let mount(2) decide
	}
	lerr := m.LoadFilesystem(ctx, fstype)
	if have, err = kernelFilesystems(); err == nil && !have[fstype] {
		names := make([]string, 0, len(have))
		for n := range have {
			names = append(names, n)
		}
		sort.Strings(names)
		msg := fmt.Sprintf("filesystem %s is not in this kernel (it has %s)", fstype, strings.Join(names, " "))
		if lerr != nil {
			msg += fmt.Sprintf("; loading fs-%s: %v", fstype, lerr)
		}
		return errors.New(msg)
	}
	return nil
}

// kernelFilesystems reads /proc/filesystems.
func kernelFilesystems() (map[string]bool, error) {
	f, err := os.Open("/proc/filesystems")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 {
			out[fields[len(fields)-1]] = true
		}
	}
	return out, sc.Err()
}
