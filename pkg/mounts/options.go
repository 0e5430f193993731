package mounts

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Options are fstab-style mount options split into mount(2)'s flags and
// the filesystem's own data string.
type Options struct {
	Flags uintptr
	Data  string
}

// flagOptions are the options mount(8) turns into mount flags: set (true)
// or clear (false) the flag.
var flagOptions = map[string]struct {
	flag uintptr
	set  bool
}{
	"ro": {unix.MS_RDONLY, true}, "rw": {unix.MS_RDONLY, false},
	"nosuid": {unix.MS_NOSUID, true}, "suid": {unix.MS_NOSUID, false},
	"nodev": {unix.MS_NODEV, true}, "dev": {unix.MS_NODEV, false},
	"noexec": {unix.MS_NOEXEC, true}, "exec": {unix.MS_NOEXEC, false},
	"sync": {unix.MS_SYNCHRONOUS, true}, "async": {unix.MS_SYNCHRONOUS, false},
	"dirsync": {unix.MS_DIRSYNC, true},
	"mand":    {unix.MS_MANDLOCK, true}, "nomand": {unix.MS_MANDLOCK, false},
	"noatime": {unix.MS_NOATIME, true}, "atime": {unix.MS_NOATIME, false},
	"nodiratime": {unix.MS_NODIRATIME, true}, "diratime": {unix.MS_NODIRATIME, false},
	"relatime": {unix.MS_RELATIME, true}, "norelatime": {unix.MS_RELATIME, false},
	"strictatime": {unix.MS_STRICTATIME, true}, "nostrictatime": {unix.MS_STRICTATIME, false},
	"lazytime": {unix.MS_LAZYTIME, true}, "nolazytime": {unix.MS_LAZYTIME, false},
	"silent": {unix.MS_SILENT, true}, "loud": {unix.MS_SILENT, false},
}

// ignoredOptions are fstab options that mean something only to mount(8)
// or systemd, accepted so that fstab lines can be copied: every mount of
// photon-init behaves as nofail already.
var ignoredOptions = map[string]bool{"defaults": true, "auto": true, "nofail": true, "_netdev": true}

// refusedOptions would make a mount something photon-init does not do.
var refusedOptions = map[string]string{
	"noauto": "every entry is mounted at boot: remove the entry instead",
	"user":   "there are no user mounts", "users": "there are no user mounts", "nouser": "there are no user mounts",
	"owner": "there are no user mounts", "group": "there are no user mounts",
	"bind": "bind mounts are not supported here", "rbind": "bind mounts are not supported here",
	"remount": "remounting is not supported here", "move": "moving mounts is not supported here",
	"shared": "propagation is not supported here", "rshared": "propagation is not supported here",
	"slave": "propagation is not supported here", "rslave": "propagation is not supported here",
	"private": "propagation is not supported here", "rprivate": "propagation is not supported here",
	"unbindable": "propagation is not supported here", "runbindable": "propagation is not supported here",
}

// ParseOptions parses a comma-separated fstab option list ("noatime,
// nodev,errors=remount-ro"): mount(8)'s flag options become Flags, later
// ones overriding earlier ones; "defaults", "auto", "nofail", "_netdev",
// "x-*" and "comment=*" are accepted and ignored; everything else goes to
// Data, in order, for the filesystem to judge. Commas inside double quotes
// (SELinux contexts) do not split.
func ParseOptions(s string) (Options, error) {
	var o Options
	var data []string
	for _, opt := range splitOptions(s) {
		opt = strings.TrimSpace(opt)
		name, _, _ := strings.Cut(opt, "=")
		if f, ok := flagOptions[opt]; ok {
			if f.set {
				o.Flags |= f.flag
			} else {
				o.Flags &^= f.flag
			}
			// The access-time options exclude one another.
			if f.set && f.flag&(unix.MS_NOATIME|unix.MS_RELATIME|unix.MS_STRICTATIME) != 0 {
				o.Flags &^= (unix.MS_NOATIME | unix.MS_RELATIME | unix.MS_STRICTATIME) &^ f.flag
			}
			continue
		}
		switch {
		case opt == "":
			return Options{}, fmt.Errorf("options %q: empty option", s)
		case ignoredOptions[opt] || strings.HasPrefix(opt, "x-") || name == "comment":
		case refusedOptions[name] != "":
			return Options{}, fmt.Errorf("option %q: %s", opt, refusedOptions[name])
		default:
			data = append(data, opt)
		}
	}
	o.Data = strings.Join(data, ",")
	return o, nil
}

// splitOptions splits on commas outside double quotes; "" gives none.
func splitOptions(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case r == ',' && !quoted:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(out, cur.String())
}

// HasData reports whether the data string holds option name (as "name" or
// "name=...").
func (o Options) HasData(name string) bool {
	for _, d := range splitOptions(o.Data) {
		if d == name || strings.HasPrefix(d, name+"=") {
			return true
		}
	}
	return false
}

// DataValue returns the value of "name=value" in the data string.
func (o Options) DataValue(name string) (string, bool) {
	for _, d := range splitOptions(o.Data) {
		if v, ok := strings.CutPrefix(d, name+"="); ok {
			return v, true
		}
	}
	return "", false
}
