package shell

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/shell/shelltest"
)

// lineTerminal is a terminal that is not a tty: its input is fixed, its
// output collected.
type lineTerminal struct {
	in  *strings.Reader
	mu  sync.Mutex
	out bytes.Buffer
}

func (l *lineTerminal) Read(p []byte) (int, error) { return l.in.Read(p) }
func (l *lineTerminal) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.out.Write(p)
}

// runLines runs a shell over the given input lines (no tty) and returns
// what it wrote, prompts and echoes removed: only command output.
func runLines(t *testing.T, opts Options, lines ...string) string {
	t.Helper()
	term := &lineTerminal{in: strings.NewReader(strings.Join(lines, "\r") + "\r")}
	opts.Terminal = term
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return commandOutput(term.out.String())
}

// commandOutput keeps the lines that are not prompts with their echo.
func commandOutput(screen string) string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(screen, "\r\n", "\n"), "\n") {
		if strings.Contains(l, "# ") && strings.Index(l, "# ") < 80 && strings.Contains(l[:strings.Index(l, "# ")], ":") {
			continue // "host:dir# cmd"
		}
		if l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(content, "->") {
			if err := os.Symlink(content[2:], p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFileCommands(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"etc/photon/init.yaml": "hostname: web\n",
		"etc/hostname":         "web\n",
		"etc/.hidden":          "x",
		"etc/link":             "->hostname",
		"etc/sub/deeper":       "",
	})
	etc := filepath.Join(dir, "etc")
	tests := []struct {
		name  string
		lines []string
		want  string
		has   []string // instead of want: substrings
	}{
		{name: "ls", lines: []string{"ls " + etc}, want: "hostname\nlink\nphoton\nsub"},
		{name: "ls -a", lines: []string{"ls -a " + etc}, want: ".hidden\nhostname\nlink\nphoton\nsub"},
		{name: "ls a file", lines: []string{"ls " + etc + "/hostname"}, want: etc + "/hostname"},
		{name: "ls several", lines: []string{"ls " + etc + "/photon " + etc + "/sub"}, want: "etc/photon:\ninit.yaml\n" + "etc/sub:\ndeeper"},
		{name: "ls -l", lines: []string{"ls -l " + etc}, has: []string{"-rw-r--r--    0    0         4 ", " hostname", "link -> hostname", "drwxr-xr-x"}},
		{name: "ls missing", lines: []string{"ls /nonexistent"}, has: []string{"ls: lstat /nonexistent: no such file or directory"}},
		{name: "ls bad flag", lines: []string{"ls -z"}, has: []string{"ls: flag provided but not defined: -z; usage: ls [-l] [-a] [PATH...]"}},
		{name: "cat", lines: []string{"cat " + etc + "/hostname " + etc + "/photon/init.yaml"}, want: "web\nhostname: web"},
		{name: "cat missing goes on", lines: []string{"cat /nonexistent " + etc + "/hostname"}, has: []string{"web", "cat: open /nonexistent: no such file or directory"}},
		{name: "cat no args", lines: []string{"cat"}, has: []string{"cat: usage: cat FILE..."}},
		{name: "cd and relative paths", lines: []string{"cd " + etc, "pwd", "cat hostname", "ls photon", "cd sub", "pwd", "cd ..", "pwd", "cd", "pwd"},
			want: etc + "\nweb\ninit.yaml\n" + etc + "/sub\n" + etc + "\n/"},
		{name: "cd not a dir", lines: []string{"cd " + etc + "/hostname"}, has: []string{"cd: " + etc + "/hostname: not a directory"}},
		{name: "echo and quotes", lines: []string{`echo 'a  b' "c d" e\ f # comment`}, want: "a  b c d e f"},
		{name: "pipes refused", lines: []string{"dmesg | grep x"}, has: []string{`"| grep x": this shell has no pipes`}},
		{name: "unbalanced quote", lines: []string{`echo "abc`}, has: []string{"cannot parse the line"}},
		{name: "unknown command", lines: []string{"nosuchcommand-xyz"}, has: []string{"nosuchcommand-xyz: command not found"}},
		{name: "help", lines: []string{"help"}, has: []string{"  cat ", "  ip ", "  dmesg ", "  exit "}},
		{name: "help command", lines: []string{"help mount"}, has: []string{"usage: mount [-t TYPE] [-o OPTIONS] [SOURCE TARGET]"}},
		{name: "exit stops", lines: []string{"echo one", "exit", "echo two"}, want: "one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runLines(t, Options{Dir: "/"}, tt.lines...)
			got = strings.ReplaceAll(got, dir+"/etc/photon:", "etc/photon:")
			got = strings.ReplaceAll(got, dir+"/etc/sub:", "etc/sub:")
			if tt.has == nil && got != tt.want {
				t.Errorf("output:\n%s\nwant:\n%s", got, tt.want)
			}
			for _, h := range tt.has {
				if !strings.Contains(got, h) {
					t.Errorf("output lacks %q:\n%s", h, got)
				}
			}
		})
	}
}

// stat returns a /proc/PID/stat line with the given fields.
func stat(pid, comm, state, ppid, utime, stime, rss string) string {
	f := make([]string, 50)
	for i := range f {
		f[i] = "0"
	}
	f[0], f[1], f[11], f[12], f[21] = state, ppid, utime, stime, rss
	return pid + " (" + comm + ") " + strings.Join(f, " ") + "\n"
}

func TestPs(t *testing.T) {
	proc := t.TempDir()
	writeFiles(t, proc, map[string]string{
		"1/stat":      stat("1", "init", "S", "0", "150", "50", "2560"),
		"1/cmdline":   "/init\x00",
		"2/stat":      stat("2", "kthreadd", "S", "0", "0", "0", "0"),
		"2/cmdline":   "",
		"417/stat":    stat("417", "odd) name", "R", "1", "6000", "100", "100000"),
		"417/cmdline": "nginx\x00-g\x00daemon off;\x00",
		"self/stat":   "not a pid",
		"uptime":      "1 2",
		"99/cmdline":  "gone", // no stat: ended while being read
	})
	got := runLines(t, Options{ProcDir: proc}, "ps")
	page := int64(os.Getpagesize()) / 1024
	want := strings.Join([]string{
		"PID PPID S  RSS TIME COMMAND",
		"  1    0 S " + pad(formatKiB(2560*page), 4) + " 0:02 /init",
		"  2    0 S    0 0:00 [kthreadd]",
		"417    1 R " + pad(formatKiB(100000*page), 4) + " 1:01 nginx -g daemon off;",
	}, "\n")
	if got != want {
		t.Errorf("ps:\n%s\nwant:\n%s", got, want)
	}
	if got := runLines(t, Options{ProcDir: proc}, "ps aux"); !strings.Contains(got, `photonctl ps`) {
		t.Errorf("ps with arguments: %q", got)
	}
}

func pad(s string, n int) string {
	for len(s) < n {
		s = " " + s
	}
	return s
}

func TestParseStat(t *testing.T) {
	p, ok := parseStat(7, []byte(stat("7", "a (b) c", "Z", "3", "100", "0", "1")), 4096)
	if !ok || p.command != "[a (b) c]" || p.state != "Z" || p.ppid != 3 || p.rssKiB != 4 || p.cpu.Seconds() != 1 {
		t.Errorf("parseStat = %+v, %v", p, ok)
	}
	for _, bad := range []string{"", "7 (x", "7 (x) S 1 2"} {
		if _, ok := parseStat(7, []byte(bad), 4096); ok {
			t.Errorf("parseStat(%q) ok", bad)
		}
	}
}

func TestMountList(t *testing.T) {
	mounts := filepath.Join(t.TempDir(), "mounts")
	writeFiles(t, filepath.Dir(mounts), map[string]string{"mounts": "proc /proc proc rw,nosuid 0 0\n" +
		"/dev/vdb /mnt/my\\040disk ext4 ro,relatime 0 0\n"})
	got := runLines(t, Options{MountsFile: mounts}, "mount")
	want := "proc on /proc type proc (rw,nosuid)\n/dev/vdb on /mnt/my disk type ext4 (ro,relatime)"
	if got != want {
		t.Errorf("mount:\n%s\nwant:\n%s", got, want)
	}
	for _, args := range []string{"mount a", "mount /dev/vdb /mnt"} {
		if got := runLines(t, Options{MountsFile: mounts}, args); !strings.Contains(got, "mount: ") {
			t.Errorf("%s: %q, want an error", args, got)
		}
	}
}

func TestParseMountOptions(t *testing.T) {
	tests := []struct {
		in    string
		flags uintptr
		data  string
	}{
		{"", 0, ""},
		{"defaults", 0, ""},
		{"ro,nosuid,size=10m,mode=0755", unix.MS_RDONLY | unix.MS_NOSUID, "size=10m,mode=0755"},
		{"ro,rw", 0, ""},
		{"rbind", unix.MS_BIND | unix.MS_REC, ""},
		{"remount,ro", unix.MS_REMOUNT | unix.MS_RDONLY, ""},
	}
	for _, tt := range tests {
		flags, data := parseMountOptions(tt.in)
		if flags != tt.flags || data != tt.data {
			t.Errorf("parseMountOptions(%q) = %#x, %q; want %#x, %q", tt.in, flags, data, tt.flags, tt.data)
		}
	}
}

func TestParseSignal(t *testing.T) {
	tests := map[string]syscall.Signal{"9": unix.SIGKILL, "KILL": unix.SIGKILL, "sigterm": unix.SIGTERM, "HUP": unix.SIGHUP, "34": syscall.Signal(34)}
	for in, want := range tests {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "65", "NOPE"} {
		if _, err := parseSignal(bad); err == nil {
			t.Errorf("parseSignal(%q) succeeded", bad)
		}
	}
}

func TestKill(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep program: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	runLines(t, Options{}, "kill -KILL "+strconv.Itoa(cmd.Process.Pid))
	err := <-done
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != unix.SIGKILL {
		t.Errorf("sleep ended with %v, want SIGKILL", err)
	}
	if got := runLines(t, Options{}, "kill", "kill -NOPE 1", "kill abc"); !strings.Contains(got, "usage: kill") ||
		!strings.Contains(got, `unknown signal "NOPE"`) || !strings.Contains(got, `"abc" is not a process id`) {
		t.Errorf("kill errors:\n%s", got)
	}
}

func TestDmesg(t *testing.T) {
	klog := func() ([]byte, error) {
		return []byte("<6>[    0.000000] Linux version 6.1.0\n<4>[    1.500000] warning <here>\n<12>[    2.0] user\nno prefix\n"), nil
	}
	got := runLines(t, Options{Klog: klog}, "dmesg")
	want := "[    0.000000] Linux version 6.1.0\n[    1.500000] warning <here>\n[    2.0] user\nno prefix"
	if got != want {
		t.Errorf("dmesg:\n%s\nwant:\n%s", got, want)
	}
	failing := func() ([]byte, error) { return nil, errors.New("syslog(READ_ALL): operation not permitted") }
	if got := runLines(t, Options{Klog: failing}, "dmesg"); got != "dmesg: syslog(READ_ALL): operation not permitted" {
		t.Errorf("dmesg error: %q", got)
	}
}

func TestReadKernelLog(t *testing.T) {
	data, err := readKernelLog()
	if errors.Is(err, unix.EPERM) {
		t.Skipf("no CAP_SYSLOG here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(formatKernelLog(data), "[") {
		t.Errorf("the kernel log has no timestamps: %q", data[:min(len(data), 200)])
	}
}

func TestPower(t *testing.T) {
	var asked []string
	power := func(a string) error { asked = append(asked, a); return nil }
	runLines(t, Options{Power: power}, "poweroff", "reboot", "halt", "poweroff now")
	if strings.Join(asked, ",") != "poweroff,reboot,halt" {
		t.Errorf("asked %v", asked)
	}
	if got := runLines(t, Options{}, "poweroff"); !strings.Contains(got, "command not found") {
		t.Errorf("poweroff without Power: %q", got)
	}
}

func TestCtlCommands(t *testing.T) {
	var calls [][]string
	ctl := func(ctx context.Context, env *Env, args []string) error {
		calls = append(calls, args)
		if args[0] == "stop" {
			return &ExitError{Code: 1}
		}
		return nil
	}
	got := runLines(t, Options{Commands: CtlCommands(ctl)},
		"photonctl ps", "photonctl logs --tail 5 web", "logs -f web", "exec web cat /etc/hostname",
		"exec -t web sh", "inspect web", "stop web", "timeline", "events", "photonctl", "exec web")
	want := [][]string{{"ps"}, {"logs", "--tail", "5", "web"}, {"logs", "-f", "web"}, {"exec", "-i", "web", "cat", "/etc/hostname"},
		{"exec", "-t", "web", "sh"}, {"inspect", "web"}, {"stop", "web"}, {"timeline"}, {"events"}}
	if len(calls) != len(want) {
		t.Fatalf("calls %q, want %q", calls, want)
	}
	for i := range want {
		if strings.Join(calls[i], " ") != strings.Join(want[i], " ") {
			t.Errorf("call %d: %q, want %q", i, calls[i], want[i])
		}
	}
	if !strings.Contains(got, "photonctl: usage: photonctl VERB") || !strings.Contains(got, "exec: usage: exec [OPTIONS] CONTAINER COMMAND") {
		t.Errorf("usage errors missing:\n%s", got)
	}
	if strings.Contains(got, "exit status") {
		t.Errorf("an exit status was shown:\n%s", got)
	}
	// The built-ins ps and kill stay the machine's.
	if got := runLines(t, Options{Commands: CtlCommands(ctl), ProcDir: t.TempDir()}, "ps"); !strings.HasPrefix(got, "PID") {
		t.Errorf("ps is not the built-in: %q", got)
	}
}

func TestProgramCtl(t *testing.T) {
	echo, err := exec.LookPath("echo")
	if err != nil {
		t.Skip("no echo program")
	}
	got := runLines(t, Options{Commands: CtlCommands(ProgramCtl(echo, "ctl")), RunProgram: shelltest.RunProgram}, "logs web", "photonctl ps")
	if got != "ctl logs web\nctl ps" {
		t.Errorf("output %q", got)
	}
	if got := runLines(t, Options{Commands: CtlCommands(ProgramCtl(echo, "ctl"))}, "logs web"); !strings.Contains(got, "runs no programs") {
		t.Errorf("without a runner: %q", got)
	}
}

func TestPrograms(t *testing.T) {
	got := runLines(t, Options{RunProgram: shelltest.RunProgram, Dir: "/tmp"}, "sh -c 'echo out; echo err >&2; pwd; exit 3'", "true")
	if got != "out\nerr\n/tmp" {
		t.Errorf("output %q", got)
	}
	if got := runLines(t, Options{}, "sh -c true"); !strings.Contains(got, "sh: command not found (and this shell runs no programs)") {
		t.Errorf("without a runner: %q", got)
	}
}

func TestCompletion(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"photon/init.yaml": "", "photon/containers/web.yaml": "", "passwd": "", ".hidden": ""})
	s, err := New(Options{Terminal: &lineTerminal{in: strings.NewReader("")}, Commands: CtlCommands(nil), Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		line  string
		start int
		want  string
	}{
		{"pho", 0, "photonctl"},
		{"po", 0, "poweroff"},
		{"photonctl lo", 10, "logs"},
		{"photonctl re", 10, "restart reboot"},
		{"cat p", 4, "passwd photon/"},
		{"cat photon/", 4, "photon/containers/ photon/init.yaml"},
		{"cat " + dir + "/pa", 4, dir + "/passwd"},
		{"cat .h", 4, ".hidden"},
		{"./pa", 0, "./passwd"},
		{"cat zz", 4, ""},
	}
	s.opts.Power = func(string) error { return nil }
	s.cmds["poweroff"] = Command{Name: "poweroff"}
	for _, tt := range tests {
		line := []rune(tt.line)
		start, got := s.complete(line, len(line))
		if start != tt.start || strings.Join(got, " ") != tt.want {
			t.Errorf("complete(%q) = %d %q; want %d %q", tt.line, start, got, tt.start, tt.want)
		}
	}
}

// fakeNet is a Netlink with fixed answers.
type fakeNet struct{}

func (fakeNet) LinkList() ([]netlink.Link, error) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	return []netlink.Link{
		&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 2, Name: "eth0", MTU: 1500, HardwareAddr: mac, EncapType: "ether",
			RawFlags: unix.IFF_UP | unix.IFF_BROADCAST | unix.IFF_MULTICAST | unix.IFF_LOWER_UP, OperState: netlink.OperUp}},
		&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo", MTU: 65536, EncapType: "loopback",
			HardwareAddr: net.HardwareAddr{0, 0, 0, 0, 0, 0}, RawFlags: unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_LOWER_UP, OperState: netlink.OperUnknown}},
		&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: 5, Name: "veth1", MTU: 1500, MasterIndex: 4, EncapType: "ether", OperState: netlink.OperDown}},
	}, nil
}

func (fakeNet) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	cidr := func(s string) *net.IPNet {
		ip, n, _ := net.ParseCIDR(s)
		n.IP = ip
		return n
	}
	switch l.Attrs().Name {
	case "lo":
		return []netlink.Addr{{IPNet: cidr("127.0.0.1/8"), Scope: int(netlink.SCOPE_HOST), Flags: unix.IFA_F_PERMANENT}}, nil
	case "eth0":
		return []netlink.Addr{
			{IPNet: cidr("10.0.2.15/24"), Broadcast: net.ParseIP("10.0.2.255"), Scope: int(netlink.SCOPE_UNIVERSE)},
			{IPNet: cidr("fec0::5054:ff:fe12:3456/64"), Scope: int(netlink.SCOPE_UNIVERSE), Flags: unix.IFA_F_PERMANENT},
		}, nil
	}
	return nil, nil
}

func (fakeNet) RouteList(l netlink.Link, family int) ([]netlink.Route, error) {
	_, sub, _ := net.ParseCIDR("10.0.2.0/24")
	return []netlink.Route{
		{Gw: net.ParseIP("10.0.2.2"), LinkIndex: 2, Protocol: unix.RTPROT_DHCP, Src: net.ParseIP("10.0.2.15"), Priority: 100},
		{Dst: sub, LinkIndex: 2, Protocol: unix.RTPROT_KERNEL, Scope: netlink.SCOPE_LINK, Src: net.ParseIP("10.0.2.15")},
		{Dst: sub, LinkIndex: 9, Type: unix.RTN_BLACKHOLE, Protocol: unix.RTPROT_STATIC},
	}, nil
}

func TestIP(t *testing.T) {
	tests := []struct {
		line, want string
	}{
		{"ip addr", "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 state UNKNOWN\n" +
			"    link/loopback 00:00:00:00:00:00\n" +
			"    inet 127.0.0.1/8 scope host lo\n" +
			"2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP\n" +
			"    link/ether 52:54:00:12:34:56\n" +
			"    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic eth0\n" +
			"    inet6 fec0::5054:ff:fe12:3456/64 scope global\n" +
			"5: veth1: <> mtu 1500 master if4 state DOWN type veth\n" +
			"    link/ether"},
		{"ip a show dev lo", "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 state UNKNOWN\n    link/loopback 00:00:00:00:00:00\n    inet 127.0.0.1/8 scope host lo"},
		{"ip link show eth0", "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP\n    link/ether 52:54:00:12:34:56"},
		{"ip route", "default via 10.0.2.2 dev eth0 proto dhcp src 10.0.2.15 metric 100\n" +
			"10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15\n" +
			"blackhole 10.0.2.0/24 dev if9 proto static"},
		{"ip r", "default via 10.0.2.2 dev eth0 proto dhcp src 10.0.2.15 metric 100\n" +
			"10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15\n" +
			"blackhole 10.0.2.0/24 dev if9 proto static"},
		{"ip addr show nope", `ip: no link "nope"`},
		{"ip", "ip: usage: ip [-4|-6] addr|route|link [show [dev] NAME]"},
		{"ip neigh", `ip: unknown object "neigh"; usage: ip [-4|-6] addr|route|link [show [dev] NAME]`},
		{"ip route add default via 1.2.3.4", "ip: this ip only shows (no changes); usage: ip [-4|-6] addr|route|link [show [dev] NAME]"},
		{"ip -x addr", "ip: unknown option -x; usage: ip [-4|-6] addr|route|link [show [dev] NAME]"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			if got := runLines(t, Options{Net: fakeNet{}}, tt.line); got != tt.want {
				t.Errorf("output:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
