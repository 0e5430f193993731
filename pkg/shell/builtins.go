package shell

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// builtins returns the built-in commands; the power commands only when the
// shell can ask for them.
func builtins(power bool) []Command {
	cmds := []Command{
		{Name: "help", Usage: "help [COMMAND]", Summary: "list the commands, or show how to use one", Run: cmdHelp},
		{Name: "exit", Usage: "exit", Summary: "leave the shell (Ctrl-D does too)", Run: func(context.Context, *Env, []string) error { return errExit }},
		{Name: "cd", Usage: "cd [DIR]", Summary: "change the shell's working directory (default /)", Run: cmdCd},
		{Name: "pwd", Usage: "pwd", Summary: "print the working directory", Run: cmdPwd},
		{Name: "echo", Usage: "echo [WORD...]", Summary: "print the words", Run: cmdEcho},
		{Name: "sleep", Usage: "sleep SECONDS", Summary: "wait (Ctrl-C stops it)", Run: cmdSleep},
		{Name: "ls", Usage: "ls [-l] [-a] [PATH...]", Summary: "list directories; -l with mode, owner, size and time, -a with dot files", Run: cmdLs},
		{Name: "cat", Usage: "cat FILE...", Summary: "print files (Ctrl-C stops it)", Run: cmdCat},
		{Name: "ps", Usage: "ps", Summary: "list the machine's processes (\"photonctl ps\" lists containers)", Run: cmdPs},
		{Name: "kill", Usage: "kill [-SIGNAL] PID...", Summary: "send a signal (default TERM) to processes", Run: cmdKill},
		{Name: "mount", Usage: "mount [-t TYPE] [-o OPTIONS] [SOURCE TARGET]", Summary: "list mounts, or mount a filesystem", Run: cmdMount},
		{Name: "umount", Usage: "umount [-l] TARGET", Summary: "unmount a filesystem (-l: lazily)", Run: cmdUmount},
		{Name: "dmesg", Usage: "dmesg", Summary: "print the kernel's log buffer", Run: cmdDmesg},
		{Name: "ip", Usage: "ip [-4|-6] addr|route|link [show [dev] NAME]", Summary: "show addresses, routes and links (netlink)", Run: cmdIP},
	}
	if power {
		for _, a := range []string{"poweroff", "reboot", "halt"} {
			cmds = append(cmds, Command{Name: a, Usage: a, Summary: a + " the machine: stop the containers, unmount, " + a,
				Run: func(ctx context.Context, env *Env, args []string) error {
					if len(args) > 1 {
						return fmt.Errorf("takes no arguments")
					}
					return env.shell.opts.Power(a)
				}})
		}
	}
	return cmds
}

// usageError is the error of a command called wrongly.
func usageError(env *Env, name string) error {
	if c, ok := env.shell.cmds[name]; ok && c.Usage != "" {
		return fmt.Errorf("usage: %s", c.Usage)
	}
	return errors.New("wrong arguments")
}

// parseFlags parses a command's flags, reporting errors (and -h) as a
// usage error.
func parseFlags(env *Env, fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return usageError(env, args[0])
		}
		return fmt.Errorf("%v; %w", err, usageError(env, args[0]))
	}
	return nil
}

func cmdHelp(ctx context.Context, env *Env, args []string) error {
	s := env.shell
	if len(args) > 1 {
		c, ok := s.cmds[args[1]]
		if !ok {
			return fmt.Errorf("no command %q", args[1])
		}
		fmt.Fprintf(env.Stdout, "usage: %s\n%s\n", c.Usage, c.Summary)
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 8, 2, ' ', 0)
	for _, n := range s.Commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", n, s.cmds[n].Summary)
	}
	tw.Flush()
	fmt.Fprintln(env.Stdout, "Other words run programs found in PATH. Keys: arrows, Ctrl-A/E, Ctrl-U/K/W, Tab, Up/Down for history, Ctrl-L redraws, Ctrl-C cancels, Ctrl-D leaves.")
	return nil
}

func cmdCd(ctx context.Context, env *Env, args []string) error {
	if len(args) > 2 {
		return usageError(env, "cd")
	}
	dir := "/"
	if len(args) == 2 {
		dir = env.Path(args[1])
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", dir)
	}
	env.shell.setDir(dir)
	return nil
}

func cmdPwd(ctx context.Context, env *Env, args []string) error {
	fmt.Fprintln(env.Stdout, env.Dir())
	return nil
}

func cmdEcho(ctx context.Context, env *Env, args []string) error {
	fmt.Fprintln(env.Stdout, strings.Join(args[1:], " "))
	return nil
}

func cmdSleep(ctx context.Context, env *Env, args []string) error {
	if len(args) != 2 {
		return usageError(env, "sleep")
	}
	secs, err := strconv.ParseFloat(args[1], 64)
	if err != nil || secs < 0 {
		return fmt.Errorf("%q is not a number of seconds", args[1])
	}
	t := time.NewTimer(time.Duration(secs * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func cmdLs(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	long := fs.Bool("l", false, "")
	all := fs.Bool("a", false, "")
	if err := parseFlags(env, fs, args); err != nil {
		return err
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{"."}
	}
	var errs []error
	for i, p := range paths {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		full := env.Path(p)
		fi, err := os.Lstat(full)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !fi.IsDir() {
			writeEntry(env.Stdout, full, p, fi, *long)
			continue
		}
		if len(paths) > 1 {
			if i > 0 {
				fmt.Fprintln(env.Stdout)
			}
			fmt.Fprintf(env.Stdout, "%s:\n", p)
		}
		entries, err := os.ReadDir(full)
		if err != nil {
			errs = append(errs, err)
		}
		for _, e := range entries { // sorted by name
			if !*all && strings.HasPrefix(e.Name(), ".") {
				continue
			}
			efull := full + "/" + e.Name()
			info, err := e.Info()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			writeEntry(env.Stdout, efull, e.Name(), info, *long)
		}
	}
	return errors.Join(errs...)
}

// writeEntry prints one name of ls: "-rw-r--r-- 0 0  1234 2024-05-01 12:00 name".
func writeEntry(w io.Writer, full, name string, fi fs.FileInfo, long bool) {
	if !long {
		fmt.Fprintln(w, name)
		return
	}
	size := strconv.FormatInt(fi.Size(), 10)
	uid, gid := "?", "?"
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid, gid = strconv.Itoa(int(st.Uid)), strconv.Itoa(int(st.Gid))
		if fi.Mode()&fs.ModeDevice != 0 {
			size = fmt.Sprintf("%d, %d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if target, err := os.Readlink(full); err == nil {
			name += " -> " + target
		}
	}
	fmt.Fprintf(w, "%s %4s %4s %9s %s %s\n", fi.Mode().String(), uid, gid, size, fi.ModTime().Format("2006-01-02 15:04"), name)
}

func cmdCat(ctx context.Context, env *Env, args []string) error {
	if len(args) < 2 {
		return usageError(env, "cat")
	}
	var errs []error
	for _, p := range args[1:] {
		if err := catFile(ctx, env.Stdout, env.Path(p)); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// catFile copies a file to w; ctx ending closes the file, which also ends
// a read that waits (a FIFO, /dev/kmsg).
func catFile(ctx context.Context, w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer func() {
		if stop() {
			f.Close()
		}
	}()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// proc is one process as ps shows it.
type proc struct {
	pid, ppid int
	state     string
	rssKiB    int64
	cpu       time.Duration
	command   string
}

func cmdPs(ctx context.Context, env *Env, args []string) error {
	if len(args) > 1 {
		return fmt.Errorf("takes no arguments (\"photonctl ps\" lists the containers)")
	}
	procs, err := readProcs(env.shell.opts.ProcDir)
	if err != nil {
		return err
	}
	rows := [][]string{{"PID", "PPID", "S", "RSS", "TIME", "COMMAND"}}
	for _, p := range procs {
		rows = append(rows, []string{strconv.Itoa(p.pid), strconv.Itoa(p.ppid), p.state, formatKiB(p.rssKiB), formatCPU(p.cpu), p.command})
	}
	_, err = io.WriteString(env.Stdout, alignRight(rows))
	return err
}

// alignRight renders rows as columns separated by a space, every column
// but the last aligned to the right, as ps does.
func alignRight(rows [][]string) string {
	var widths []int
	for _, r := range rows {
		for i, c := range r[:len(r)-1] {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r[:len(r)-1] {
			b.WriteString(strings.Repeat(" ", widths[i]-len(c)))
			b.WriteString(c)
			b.WriteByte(' ')
		}
		b.WriteString(r[len(r)-1])
		b.WriteByte('\n')
	}
	return b.String()
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture photon-init runs on.
const clockTicks = 100

// readProcs reads every process of procDir, sorted by pid. Processes that
// end while being read are left out.
func readProcs(procDir string) ([]proc, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, err
	}
	page := int64(os.Getpagesize())
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		stat, err := os.ReadFile(procDir + "/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		p, ok := parseStat(pid, stat, page)
		if !ok {
			continue
		}
		cmdline, _ := os.ReadFile(procDir + "/" + e.Name() + "/cmdline")
		if c := strings.TrimSpace(strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " ")); c != "" {
			p.command = c
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out, nil
}

// parseStat parses /proc/PID/stat: "pid (comm) state ppid ...". The
// command name may hold spaces and parentheses, so it ends at the last ')'.
func parseStat(pid int, stat []byte, page int64) (proc, bool) {
	s := string(stat)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return proc{}, false
	}
	f := strings.Fields(s[close+1:])
	// f[0] state, f[1] ppid, f[11] utime, f[12] stime, f[21] rss (pages)
	if len(f) < 22 {
		return proc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	return proc{
		pid:     pid,
		ppid:    ppid,
		state:   f[0],
		rssKiB:  rss * page / 1024,
		cpu:     time.Duration(utime+stime) * time.Second / clockTicks,
		command: "[" + s[open+1:close] + "]",
	}, true
}

// formatKiB shows a size in KiB as ps does, with M and G for large ones.
func formatKiB(k int64) string {
	switch {
	case k >= 10<<20:
		return fmt.Sprintf("%dG", k>>20)
	case k >= 10<<10:
		return fmt.Sprintf("%dM", k>>10)
	}
	return strconv.FormatInt(k, 10)
}

// formatCPU shows CPU time as M:SS.
func formatCPU(d time.Duration) string {
	s := int64(d / time.Second)
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

func cmdKill(ctx context.Context, env *Env, args []string) error {
	sig := unix.SIGTERM
	rest := args[1:]
	if len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
		s, err := parseSignal(rest[0][1:])
		if err != nil {
			return err
		}
		sig, rest = s, rest[1:]
	}
	if len(rest) == 0 {
		return usageError(env, "kill")
	}
	var errs []error
	for _, a := range rest {
		pid, err := strconv.Atoi(a)
		if err != nil || pid <= 0 {
			errs = append(errs, fmt.Errorf("%q is not a process id", a))
			continue
		}
		if err := unix.Kill(pid, sig); err != nil {
			errs = append(errs, fmt.Errorf("%d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// parseSignal accepts "9", "KILL" and "SIGKILL".
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// mountFlag returns the flags that a mount option sets and clears, and
// whether it is a flag at all (rather than the filesystem's data).
func mountFlag(o string) (set, clear uintptr, ok bool) {
	switch o {
	case "ro":
		return unix.MS_RDONLY, 0, true
	case "rw":
		return 0, unix.MS_RDONLY, true
	case "nosuid":
		return unix.MS_NOSUID, 0, true
	case "suid":
		return 0, unix.MS_NOSUID, true
	case "nodev":
		return unix.MS_NODEV, 0, true
	case "dev":
		return 0, unix.MS_NODEV, true
	case "noexec":
		return unix.MS_NOEXEC, 0, true
	case "exec":
		return 0, unix.MS_NOEXEC, true
	case "sync":
		return unix.MS_SYNCHRONOUS, 0, true
	case "async":
		return 0, unix.MS_SYNCHRONOUS, true
	case "remount":
		return unix.MS_REMOUNT, 0, true
	case "bind":
		return unix.MS_BIND, 0, true
	case "rbind":
		return unix.MS_BIND | unix.MS_REC, 0, true
	case "move":
		return unix.MS_MOVE, 0, true
	case "noatime":
		return unix.MS_NOATIME, 0, true
	case "nodiratime":
		return unix.MS_NODIRATIME, 0, true
	case "relatime":
		return unix.MS_RELATIME, 0, true
	case "strictatime":
		return unix.MS_STRICTATIME, 0, true
	case "dirsync":
		return unix.MS_DIRSYNC, 0, true
	case "silent":
		return unix.MS_SILENT, 0, true
	case "defaults":
		return 0, 0, true
	}
	return 0, 0, false
}

// parseMountOptions splits "-o" options into flags and the filesystem's
// data string.
func parseMountOptions(opts string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range strings.Split(opts, ",") {
		if o == "" {
			continue
		}
		if set, clear, ok := mountFlag(o); ok {
			flags = flags&^clear | set
			continue
		}
		data = append(data, o)
	}
	return flags, strings.Join(data, ",")
}

func cmdMount(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("mount", flag.ContinueOnError)
	fstype := fs.String("t", "", "")
	opts := fs.String("o", "", "")
	if err := parseFlags(env, fs, args); err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
		return listMounts(env.Stdout, env.shell.opts.MountsFile)
	case 2:
	default:
		return usageError(env, "mount")
	}
	flags, data := parseMountOptions(*opts)
	if *fstype == "" && flags&(unix.MS_BIND|unix.MS_MOVE|unix.MS_REMOUNT) == 0 {
		return errors.New("give the filesystem type with -t (this shell does not guess it)")
	}
	source, target := fs.Arg(0), env.Path(fs.Arg(1))
	if strings.HasPrefix(source, ".") || strings.Contains(source, "/") && !strings.HasPrefix(source, "/") {
		source = env.Path(source)
	}
	if err := unix.Mount(source, target, *fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", source, target, err)
	}
	return nil
}

// listMounts prints a mounts file as "SOURCE on TARGET type TYPE (OPTIONS)".
func listMounts(w io.Writer, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		fmt.Fprintf(w, "%s on %s type %s (%s)\n", unescapeMount(f[0]), unescapeMount(f[1]), f[2], f[3])
	}
	return nil
}

// unescapeMount undoes the octal escapes of /proc/mounts ("\040" for a
// space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func cmdUmount(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("umount", flag.ContinueOnError)
	lazy := fs.Bool("l", false, "")
	if err := parseFlags(env, fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError(env, "umount")
	}
	flags := 0
	if *lazy {
		flags = unix.MNT_DETACH
	}
	target := env.Path(fs.Arg(0))
	if err := unix.Unmount(target, flags); err != nil {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	return nil
}

// readKernelLog reads the whole kernel log buffer (syslog(2)
// SYSLOG_ACTION_READ_ALL), sized by SYSLOG_ACTION_SIZE_BUFFER.
func readKernelLog() ([]byte, error) {
	size, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil {
		return nil, fmt.Errorf("syslog(SIZE_BUFFER): %w", err)
	}
	if size <= 0 {
		size = 1 << 20
	}
	buf := make([]byte, size)
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		return nil, fmt.Errorf("syslog(READ_ALL): %w", err)
	}
	return buf[:n], nil
}

func cmdDmesg(ctx context.Context, env *Env, args []string) error {
	if len(args) > 1 {
		return usageError(env, "dmesg")
	}
	data, err := env.shell.opts.Klog()
	if err != nil {
		return err
	}
	_, err = io.WriteString(env.Stdout, formatKernelLog(data))
	return err
}

// formatKernelLog drops the "<LEVEL>" prefix of each line of the kernel's
// log buffer, as dmesg does.
func formatKernelLog(data []byte) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if strings.HasPrefix(line, "<") {
			if i := strings.IndexByte(line, '>'); i > 0 && i < 6 {
				if _, err := strconv.Atoi(line[1:i]); err == nil {
					line = line[i+1:]
				}
			}
		}
		b.WriteString(line)
	}
	return b.String()
}
