package blockdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Device is a block device: a whole disk or a partition.
type Device struct {
	// Name is the kernel's name ("vda", "vda1", "nvme0n1p2").
	Name string
	// Path is the device node ("/dev/vda1").
	Path string
	// Major and Minor are the device numbers.
	Major, Minor uint32
	// Size is in bytes.
	Size int64
	// ReadOnly is the kernel's read-only flag of the device.
	ReadOnly bool
	// Disk is the whole disk's name; for a disk, its own name.
	Disk string
	// Partition is the partition number, 0 for a whole disk.
	Partition int
	// Partitioned is true for a whole disk the kernel found partitions on.
	Partitioned bool
	// Filesystem is what the device's superblock says (zero when nothing
	// known was found).
	Filesystem
	// PartUUID and PartLabel come from the disk's partition table.
	PartUUID, PartLabel string
	// ProbeErr is set when the device could not be read.
	ProbeErr error

	// seq is the disk's diskseq (a number the kernel gives each disk,
	// and a loop device at each attach), when sysfs has it.
	seq string
}

// Describe renders the device for people: "vdb (ext4 \"photon-data\")".
func (d Device) Describe() string {
	var what string
	switch {
	case d.ProbeErr != nil:
		what = "unreadable: " + d.ProbeErr.Error()
	case d.Type == "" && d.Partitioned:
		what = "partitioned"
	case d.Type == "":
		what = "no filesystem"
	case d.Label != "":
		what = fmt.Sprintf("%s %q", d.Type, d.Label)
	default:
		what = d.Type
	}
	return fmt.Sprintf("%s (%s)", d.Name, what)
}

// Scanner lists the machine's block devices from sysfs and probes them,
// remembering each probe while the device keeps its numbers and size. It is
// safe for concurrent use.
type Scanner struct {
	sysDir, devDir string

	mu    sync.Mutex
	cache map[string]Device
}

// NewScanner returns a scanner reading sysDir ("/sys") and opening device
// nodes in devDir ("/dev").
func NewScanner(sysDir, devDir string) *Scanner {
	return &Scanner{sysDir: sysDir, devDir: devDir, cache: map[string]Device{}}
}

// Forget drops what the scanner knows about the named device, so that the
// next scan probes it again (after formatting it, say).
func (s *Scanner) Forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cache, name)
}

// Scan lists the block devices that have a size (an unused loop device or
// an empty CD drive has none), each disk followed by its partitions, and
// probes the ones it has not seen.
func (s *Scanner) Scan() ([]Device, error) {
	blockDir := filepath.Join(s.sysDir, "block")
	entries, err := os.ReadDir(blockDir)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	var out []Device
	for _, e := range entries {
		disk, ok := s.readSys(filepath.Join(blockDir, e.Name()), e.Name(), e.Name(), 0)
		if !ok {
			continue
		}
		disk.seq = readSysFile(filepath.Join(blockDir, e.Name(), "diskseq"))
		parts := s.partitions(filepath.Join(blockDir, e.Name()), disk)
		disk.Partitioned = len(parts) > 0
		disk = s.probe(disk, nil)
		out = append(out, disk)
		if len(parts) == 0 {
			continue
		}
		table, terr := s.table(disk)
		for _, p := range parts {
			p = s.probe(p, table)
			if terr != nil && p.ProbeErr == nil && p.PartUUID == "" {
				p.ProbeErr = terr
			}
			out = append(out, p)
		}
	}
	s.prune(out)
	return out, nil
}

// prune forgets the devices that are gone, so that a name used again is
// probed again.
func (s *Scanner) prune(present []Device) {
	seen := make(map[string]bool, len(present))
	for _, d := range present {
		seen[d.Name] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range s.cache {
		if !seen[name] {
			delete(s.cache, name)
		}
	}
}

// partitions lists the partitions of the disk whose sysfs directory is dir.
func (s *Scanner) partitions(dir string, disk Device) []Device {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var parts []Device
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), disk.Name) {
			continue
		}
		pdir := filepath.Join(dir, e.Name())
		n, err := strconv.Atoi(readSysFile(filepath.Join(pdir, "partition")))
		if err != nil {
			continue
		}
		if p, ok := s.readSys(pdir, e.Name(), disk.Name, n); ok {
			p.seq = disk.seq
			parts = append(parts, p)
		}
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Partition < parts[j].Partition })
	return parts
}

// readSys reads a device's numbers, size and flags from its sysfs
// directory; ok is false for devices without a size.
func (s *Scanner) readSys(dir, name, disk string, part int) (Device, bool) {
	majMin := readSysFile(filepath.Join(dir, "dev"))
	maj, min, ok := strings.Cut(majMin, ":")
	sectors, err := strconv.ParseInt(readSysFile(filepath.Join(dir, "size")), 10, 64)
	if !ok || err != nil || sectors == 0 {
		return Device{}, false
	}
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return Device{}, false
	}
	return Device{
		Name:      name,
		Path:      filepath.Join(s.devDir, strings.ReplaceAll(name, "!", "/")),
		Major:     uint32(ma),
		Minor:     uint32(mi),
		Size:      sectors * 512, // sysfs sizes are in 512-byte units whatever the sector size
		ReadOnly:  readSysFile(filepath.Join(dir, "ro")) == "1",
		Disk:      disk,
		Partition: part,
	}, true
}

// probe fills in what d's content says, from the cache when d is unchanged
// (same numbers, size and diskseq).
// table is the disk's partition table, for partitions.
func (s *Scanner) probe(d Device, table *Table) Device {
	s.mu.Lock()
	old, ok := s.cache[d.Name]
	s.mu.Unlock()
	if ok && old.Major == d.Major && old.Minor == d.Minor && old.Size == d.Size && old.seq == d.seq {
		old.Partitioned = d.Partitioned
		old.ReadOnly = d.ReadOnly
		return old
	}
	if table != nil {
		if p, ok := table.Partition(d.Partition); ok {
			d.PartUUID, d.PartLabel = p.UUID, p.Name
		}
	}
	fs, err := ProbeFile(d.Path)
	switch {
	case err == nil:
		d.Filesystem = fs
	case !errors.Is(err, ErrNoSignature):
		d.ProbeErr = err
	}
	if d.ProbeErr == nil {
		s.mu.Lock()
		s.cache[d.Name] = d
		s.mu.Unlock()
	}
	return d
}

// table reads a partitioned disk's partition table.
func (s *Scanner) table(disk Device) (*Table, error) {
	f, err := os.Open(disk.Path)
	if err != nil {
		return nil, fmt.Errorf("partition table of %s: %w", disk.Name, err)
	}
	defer f.Close()
	var ss int64
	if n, err := strconv.ParseInt(readSysFile(filepath.Join(s.sysDir, "block", disk.Name, "queue", "logical_block_size")), 10, 64); err == nil {
		ss = n
	}
	t, err := ReadPartitions(f, ss)
	if err != nil {
		return nil, fmt.Errorf("partition table of %s: %w", disk.Name, err)
	}
	return t, nil
}

func readSysFile(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// NotFoundError is returned by Find when no device matched in time.
type NotFoundError struct {
	Spec   Spec
	Waited time.Duration
	// Seen are the devices present at the last scan.
	Seen []Device
}

func (e *NotFoundError) Error() string {
	seen := make([]string, len(e.Seen))
	for i, d := range e.Seen {
		seen[i] = d.Describe()
	}
	list := "none"
	if len(seen) > 0 {
		list = strings.Join(seen, ", ")
	}
	return fmt.Sprintf("%s: no such device after %v (block devices: %s)", e.Spec, e.Waited.Round(100*time.Millisecond), list)
}

// Poll scans the devices and calls fn with them until fn reports done or
// fails, or ctx ends (then it returns ctx's error). Scans are cheap (sysfs
// reads; only new devices are probed): the pause between them grows from
// 10 ms to 100 ms.
func (s *Scanner) Poll(ctx context.Context, fn func(devs []Device) (done bool, err error)) error {
	pause := 10 * time.Millisecond
	for {
		devs, err := s.Scan()
		if err != nil {
			return err
		}
		if done, err := fn(devs); done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		if pause < 100*time.Millisecond {
			pause *= 2
		}
	}
}

// Find waits up to timeout (zero: one look) for the one device spec names.
// A path spec matches the device with the same device numbers as the node
// at that path. Two devices matching a label or UUID is an error.
func (s *Scanner) Find(ctx context.Context, spec Spec, timeout time.Duration) (Device, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var found Device
	var last []Device
	err := s.Poll(ctx, func(devs []Device) (bool, error) {
		last = devs
		matches := s.match(spec, devs)
		switch len(matches) {
		case 0:
			return timeout <= 0, nil
		case 1:
			found = matches[0]
			return true, nil
		}
		names := make([]string, len(matches))
		for i, d := range matches {
			names[i] = d.Name
		}
		return true, fmt.Errorf("%s: %d devices match (%s): give a UUID or a path", spec, len(matches), strings.Join(names, ", "))
	})
	switch {
	case err != nil && !errors.Is(err, context.DeadlineExceeded):
		return Device{}, err
	case found.Name != "":
		return found, nil
	case ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled):
		return Device{}, ctx.Err()
	}
	return Device{}, &NotFoundError{Spec: spec, Waited: time.Since(start), Seen: last}
}

// match returns the devices spec names. A path matches by the device
// numbers of its node (so /dev/disk/... links and renamed nodes work).
func (s *Scanner) match(spec Spec, devs []Device) []Device {
	var out []Device
	if spec.IsPath() {
		var st unix.Stat_t
		if err := unix.Stat(spec.Value, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
			return nil
		}
		for _, d := range devs {
			if d.Major == unix.Major(st.Rdev) && d.Minor == unix.Minor(st.Rdev) {
				d.Path = spec.Value
				out = append(out, d)
			}
		}
		return out
	}
	for _, d := range devs {
		if spec.Matches(d) {
			out = append(out, d)
		}
	}
	return out
}

// blankSpan is how much of each end of a device must read as zeros for it
// to count as blank.
const blankSpan = 1 << 20

// Blank reports whether the device or image at path is blank: no known
// signature, no partition table, and its first and last MiB all zeros (so
// that nothing photon-init cannot recognise is there either). Only a
// blank device is ever formatted.
func Blank(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("blank check: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return false, fmt.Errorf("blank check %s: %w", path, err)
	}
	if size == 0 {
		return false, nil
	}
	spans := [][2]int64{{0, min(size, blankSpan)}, {max(0, size-blankSpan), size}}
	buf := make([]byte, 64<<10)
	for _, sp := range spans {
		for off := sp[0]; off < sp[1]; {
			n := int(min(int64(len(buf)), sp[1]-off))
			if _, err := f.ReadAt(buf[:n], off); err != nil {
				return false, fmt.Errorf("blank check %s at %d: %w", path, off, err)
			}
			if !isZero(buf[:n]) {
				return false, nil
			}
			off += int64(n)
		}
	}
	return true, nil
}
