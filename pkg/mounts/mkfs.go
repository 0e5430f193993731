package mounts

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/photon-init/photon-init/pkg/blockdev"
)

// photon-init contains no mkfs of its own (no well-kept Go library writes
// ext4, xfs or btrfs): formatting runs the filesystem's own tool, which must
// be in the initramfs (or the root) on PATH. See docs/storage.md.

// labelLimits are the longest labels each filesystem takes, in bytes.
var labelLimits = map[string]int{"ext2": 16, "ext3": 16, "ext4": 16, "xfs": 12, "vfat": 11, "btrfs": 255}

// The regular expressions are compiled on first use, not at package init,
// which every exec of the binary pays (PID 1 and each container's init).
var (
	rfcUUID = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	})
	fatUUID  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-fA-F]{4}-[0-9a-fA-F]{4}$`) })
	fatLabel = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Z0-9 !#$%&'()@^_{}~-]+$`) })
)

// checkMkfsName checks that a filesystem of type fstype can be given the
// label or UUID the source names, so that the next boot finds it.
func checkMkfsName(fstype string, spec blockdev.Spec) error {
	switch spec.Key {
	case "LABEL":
		if n := labelLimits[fstype]; len(spec.Value) > n {
			return fmt.Errorf("label %q is longer than %s's %d bytes", spec.Value, fstype, n)
		}
		if fstype == "vfat" && !fatLabel().MatchString(spec.Value) {
			return fmt.Errorf("label %q: a FAT label is upper-case letters, digits, spaces and !#$%%&'()-@^_{}~", spec.Value)
		}
	case "UUID":
		if fstype == "vfat" && !fatUUID().MatchString(spec.Value) {
			return fmt.Errorf("UUID %q: a FAT volume ID is XXXX-XXXX", spec.Value)
		}
		if fstype != "vfat" && !rfcUUID().MatchString(spec.Value) {
			return fmt.Errorf("UUID %q is not of the form 01234567-89ab-cdef-0123-456789abcdef", spec.Value)
		}
	}
	return nil
}

// mkfsCommand returns the command that formats device as fstype, giving it
// the label or UUID spec names.
func mkfsCommand(fstype, device string, spec blockdev.Spec) (*exec.Cmd, error) {
	tool, err := exec.LookPath("mkfs." + fstype)
	var args []string
	if err != nil && isExt(fstype) {
		if tool, err = exec.LookPath("mke2fs"); err == nil {
			args = append(args, "-t", fstype)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("mkfs_if_empty: no mkfs.%s on PATH (%s): photon-init has no formatter of its own, put the tool into the initramfs (docs/storage.md)", fstype, os.Getenv("PATH"))
	}
	label, uuid := "", ""
	switch spec.Key {
	case "LABEL":
		label = spec.Value
	case "UUID":
		uuid = spec.Value
	}
	switch {
	case isExt(fstype):
		args = append(args, "-q", "-F")
		if label != "" {
			args = append(args, "-L", label)
		}
		if uuid != "" {
			args = append(args, "-U", uuid)
		}
	case fstype == "xfs":
		args = append(args, "-q", "-f")
		if label != "" {
			args = append(args, "-L", label)
		}
		if uuid != "" {
			args = append(args, "-m", "uuid="+uuid)
		}
	case fstype == "btrfs":
		args = append(args, "-q", "-f")
		if label != "" {
			args = append(args, "-L", label)
		}
		if uuid != "" {
			args = append(args, "-U", uuid)
		}
	case fstype == "vfat":
		if label != "" {
			args = append(args, "-n", label)
		}
		if uuid != "" {
			args = append(args, "-i", strings.ReplaceAll(uuid, "-", ""))
		}
	}
	return exec.Command(tool, append(args, device)...), nil
}

// format runs mkfs on dev and probes it again.
func (m *Mounter) format(ctx context.Context, e Entry, spec blockdev.Spec, dev blockdev.Device) (blockdev.Device, error) {
	cmd, err := mkfsCommand(e.MkfsIfEmpty, dev.Path, spec)
	if err != nil {
		return dev, err
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	run := m.Run
	if run == nil {
		run = func(ctx context.Context, cmd *exec.Cmd) error {
			if err := cmd.Start(); err != nil {
				return err
			}
			stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
			defer stop()
			return cmd.Wait()
		}
	}
	start := time.Now()
	m.markUsed(dev.Name) // claimed, even if formatting fails
	if err := run(ctx, cmd); err != nil {
		return dev, fmt.Errorf("mkfs_if_empty: %s: %w\n%s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(out.String()))
	}
	m.devices().Forget(dev.Name)
	fs, err := blockdev.ProbeFile(dev.Path)
	if err != nil {
		return dev, fmt.Errorf("mkfs_if_empty: after %s: %w", strings.Join(cmd.Args, " "), err)
	}
	if fs.Type != e.MkfsIfEmpty {
		return dev, fmt.Errorf("mkfs_if_empty: %s made %q, not %s", strings.Join(cmd.Args, " "), fs.Type, e.MkfsIfEmpty)
	}
	dev.Filesystem = fs
	m.log().Info(fmt.Sprintf("mounts: formatted %s as %s in %v (%s)", dev.Path, e.MkfsIfEmpty, time.Since(start).Round(time.Millisecond), strings.Join(cmd.Args, " ")))
	return dev, nil
}
