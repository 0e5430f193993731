package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/photon-init/photon-init/test/vm"
)

// shellHost is the host name of the debug shell tests' machines; the
// built-in shell's prompt is "HOST:DIR# ".
const shellHost = "shelltest"

// promptOf matches a console line that ends in the built-in shell's
// prompt on host, in any directory, possibly with the escape sequence of a
// redraw.
func promptOf(host string) *regexp.Regexp {
	return regexp.MustCompile(regexp.QuoteMeta(host+":") + `/[^#]*# (\x1b\[K)?$`)
}

// waitPrompt waits until the console's unfinished last line, at index
// from or later, is the prompt.
func waitPrompt(ctx context.Context, t *testing.T, v *vm.VM, prompt *regexp.Regexp, from int) {
	t.Helper()
	for {
		lines := v.Lines()
		if n := len(lines); n > from && prompt.MatchString(lines[n-1].Text) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for the prompt /%s/: %v; console ends:\n%s", prompt, ctx.Err(), v.ConsoleTail(30))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// shellRun types line on the serial console once the prompt shows, and
// returns the lines printed between the command's own line and the next
// prompt.
func shellRun(ctx context.Context, t *testing.T, v *vm.VM, prompt *regexp.Regexp, line string) []string {
	t.Helper()
	waitPrompt(ctx, t, v, prompt, 0)
	before := len(v.Lines()) - 1 // the prompt's line, unfinished
	if err := v.Type(line + "\r"); err != nil {
		t.Fatal(err)
	}
	waitPrompt(ctx, t, v, prompt, before+1)
	lines := v.Lines()
	var out []string
	for _, l := range lines[before+1 : len(lines)-1] {
		out = append(out, l.Text)
	}
	t.Logf("%s\n%s", line, strings.Join(out, "\n"))
	return out
}

// typeWait types keys on the serial console and waits for a line that
// matches pattern.
func typeWait(ctx context.Context, t *testing.T, v *vm.VM, keys, pattern string) {
	t.Helper()
	if err := v.Type(keys); err != nil {
		t.Fatal(err)
	}
	if _, err := v.WaitFor(ctx, regexp.MustCompile(pattern)); err != nil {
		t.Fatal(err)
	}
}

// shellEnded is the console's line after a debug shell ended.
const shellEnded = `the debug shell ended; press Enter on this console for another`

// powerButton presses the power button and checks the clean shutdown.
func powerButton(t *testing.T, v *vm.VM) {
	t.Helper()
	if err := v.Powerdown(); err != nil {
		t.Fatal(err)
	}
	expectShutdown(t, v, "shutdown: poweroff requested (", "reboot(POWER_OFF)", "reboot: Power down")
}

// expectOutput checks that some output line matches each pattern.
func expectOutput(t *testing.T, cmd string, out []string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		re := regexp.MustCompile(p)
		found := false
		for _, l := range out {
			if re.MatchString(l) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: no output line matches %q; output:\n%s", cmd, p, strings.Join(out, "\n"))
		}
	}
}

// TestDebugShell boots with photon.debug=shell and no shell in the
// initramfs: the built-in shell takes the serial console while the boot
// goes on, runs ps, ls, ip, dmesg, mount and a Tab completion typed over
// the serial line, and powers the machine off cleanly.
func TestDebugShell(t *testing.T) {
	forEachMachine(t, vm.Machines(), func(t *testing.T, m vm.Machine) {
		v, _ := bootPhoton(t, m, vm.Overlay{"etc/photon/init.yaml": "hostname: " + shellHost + "\n"}, "photon.debug=shell")
		if _, ok := v.Find(regexp.MustCompile(`photon-init debug shell: photon\.debug=shell is on the kernel command line`)); !ok {
			t.Fatal("no debug shell banner on the console")
		}
		ctx := phase(t)
		prompt := promptOf(shellHost)
		expectOutput(t, "ps", shellRun(ctx, t, v, prompt, "ps"),
			`^PID +PPID +S +RSS +TIME +COMMAND$`, `^ *1 +0 +[RS] +\S+ +\S+ +/init$`, `^ *2 +0 +S +0 +\S+ +\[kthreadd\]$`)
		expectOutput(t, "ls", shellRun(ctx, t, v, prompt, "ls /etc/photon"), `^init\.yaml$`)
		expectOutput(t, "ip addr", shellRun(ctx, t, v, prompt, "ip addr"),
			`^1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 state UNKNOWN$`, `^    inet 127\.0\.0\.1/8 scope host lo$`,
			`^2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state \S+$`, `^    link/ether 52:54:00:12:34:56$`)
		if out := shellRun(ctx, t, v, prompt, "ip route"); len(out) > 0 && strings.HasPrefix(out[0], "ip:") {
			t.Errorf("ip route failed: %s", out[0])
		}
		expectOutput(t, "dmesg", shellRun(ctx, t, v, prompt, "dmesg"), `^\[ *0\.000000\] Linux version `, `photon\.debug=shell`)
		expectOutput(t, "mount", shellRun(ctx, t, v, prompt, "mount"), `^proc on /proc type proc \(`, `^run on /run type tmpfs \(`)
		expectOutput(t, "cat", shellRun(ctx, t, v, prompt, "cat /proc/cmdline"), `photon\.debug=shell`)
		// Tab completes "ini" to "init.yaml" over the serial line.
		expectOutput(t, "completion", shellRun(ctx, t, v, prompt, "cat /etc/photon/ini\t"), `^hostname: `+shellHost+`$`)
		// Ctrl-C stops a built-in command: typed right behind it (one
		// read of the serial line), and typed while it runs.
		start := time.Now()
		expectOutput(t, "Ctrl-C", shellRun(ctx, t, v, prompt, "sleep 100\r\x03"), `^\^C$`)
		waitPrompt(ctx, t, v, prompt, 0)
		before := len(v.Lines()) - 1
		typeWait(ctx, t, v, "sleep 100\r", `# sleep 100$`)
		time.Sleep(300 * time.Millisecond)
		typeWait(ctx, t, v, "\x03", `^\^C$`)
		waitPrompt(ctx, t, v, prompt, before+1)
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("Ctrl-C took %v to stop sleep", d)
		}
		shellRun(ctx, t, v, prompt, "cd /etc/photon")
		expectOutput(t, "relative", shellRun(ctx, t, v, prompt, "pwd"), `^/etc/photon$`)
		expectOutput(t, "relative", shellRun(ctx, t, v, prompt, "cat init.yaml"), `^hostname: `+shellHost+`$`)
		shellRun(ctx, t, v, prompt, "poweroff")
		expectShutdown(t, v, "shutdown: poweroff requested (debug shell)", "reboot(POWER_OFF)", "reboot: Power down")
	})
}

// TestDebugShellEnter: with photon.debug set, the console offers a shell
// and Enter starts it; exit gives the console back, and Enter another
// shell. Without photon.debug, Enter gives nothing.
func TestDebugShellEnter(t *testing.T) {
	forEachMachine(t, []vm.Machine{vm.Q35}, func(t *testing.T, m vm.Machine) {
		files := vm.Overlay{"etc/photon/init.yaml": "hostname: " + shellHost + "\n"}
		v, _ := bootPhoton(t, m, files, "photon.debug")
		ctx := phase(t)
		if _, ok := v.Find(regexp.MustCompile(`debug: press Enter on /dev/ttyS0 for a debug shell \(photon\.debug is set\)`)); !ok {
			t.Error("the console does not say that Enter gives a shell")
		}
		if _, ok := v.Find(regexp.MustCompile(`photon-init debug shell:`)); ok {
			t.Fatal("a shell started before Enter")
		}
		prompt := promptOf(shellHost)
		for i := 0; i < 2; i++ {
			typeWait(ctx, t, v, "\r", `photon-init debug shell: Enter was pressed on the console \(photon\.debug is set\)`)
			expectOutput(t, "echo", shellRun(ctx, t, v, prompt, "echo 'hello  there'"), `^hello  there$`)
			waitPrompt(ctx, t, v, prompt, 0)
			typeWait(ctx, t, v, "exit\r", shellEnded)
		}
		powerButton(t, v)
	})
}

// TestDebugShellNotOffered: without photon.debug nothing reads the
// console; Enter starts no shell.
func TestDebugShellNotOffered(t *testing.T) {
	forEachMachine(t, []vm.Machine{vm.Q35}, func(t *testing.T, m vm.Machine) {
		v, _ := bootPhoton(t, m, nil)
		for i := 0; i < 3; i++ {
			if err := v.Type("\r"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if l, ok := v.Find(regexp.MustCompile(`debug shell|press Enter`)); ok {
			t.Errorf("a debug shell was offered without photon.debug: %q", l.Text)
		}
		powerButton(t, v)
	})
}

// TestEmergencyShell boots an initramfs whose /run is a file, not a
// directory: the API filesystems cannot be mounted, the boot stops in the
// emergency state, and the debug shell starts on the console by itself
// (no photon.debug) with the error shown. The machine still powers off
// cleanly from it.
func TestEmergencyShell(t *testing.T) {
	forEachMachine(t, []vm.Machine{vm.Q35}, func(t *testing.T, m vm.Machine) {
		host := vm.HostT(t)
		img := vm.InitramfsT(t, host, vm.Overlay{"run": "a file where /run should be\n"}, vm.BuildOptions{Compress: "none"})
		v := vm.StartT(t, vm.Config{Host: host, Machine: m, Initramfs: img})
		ctx := phase(t)
		const failure = `boot step apifs: mount tmpfs on /run: mkdir /run: not a directory`
		// The log line and the shell's banner take different ways to the
		// console: either may come first.
		waitAnyOrder(ctx, t, v, `EMERGENCY: `+regexp.QuoteMeta(failure), `photon-init debug shell: the boot failed: `+regexp.QuoteMeta(failure))
		if _, ok := v.Find(vm.BootComplete); ok {
			t.Error("the boot completed although apifs failed")
		}
		// No host name was set: the prompt says "photon".
		prompt := promptOf("photon")
		expectOutput(t, "ls -l", shellRun(ctx, t, v, prompt, "ls -l /run"), `^-rw-r--r-- +0 +0 +\d+ .* /run$`)
		expectOutput(t, "cat", shellRun(ctx, t, v, prompt, "cat /run"), `^a file where /run should be$`)
		expectOutput(t, "ps", shellRun(ctx, t, v, prompt, "ps"), `^ *1 +0 +[RS] .* /init$`)
		expectOutput(t, "mount", shellRun(ctx, t, v, prompt, "mount"), `^proc on /proc type proc`, `^devtmpfs on /dev type devtmpfs`)
		shellRun(ctx, t, v, prompt, "poweroff")
		expectShutdown(t, v, "shutdown: poweroff requested (debug shell)", "reboot(POWER_OFF)", "reboot: Power down")
	})
}

// TestDebugShellBinSh: an initramfs with a shell (busybox as /bin/sh) gets
// that shell on the console for photon.debug=shell, started through the
// reaper with the console as its controlling terminal.
func TestDebugShellBinSh(t *testing.T) {
	forEachMachine(t, []vm.Machine{vm.Q35}, func(t *testing.T, m vm.Machine) {
		bb, err := os.ReadFile("/bin/busybox")
		if err != nil {
			t.Fatalf("busybox-static (scripts/deps.sh): %v", err)
		}
		overlay := t.TempDir()
		if err := os.MkdirAll(filepath.Join(overlay, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(overlay, "bin", "busybox"), bb, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("busybox", filepath.Join(overlay, "bin", "sh")); err != nil {
			t.Fatal(err)
		}
		host := vm.HostT(t)
		img := vm.InitramfsT(t, host, nil, vm.BuildOptions{Compress: "none", OverlayDir: overlay})
		v := vm.StartT(t, vm.Config{Host: host, Machine: m, Initramfs: img, KernelArgs: []string{"photon.debug=shell"}})
		ctx := phase(t)
		if _, err := v.WaitFor(ctx, regexp.MustCompile(`/bin/sh starts; photon-init and the containers keep running`)); err != nil {
			t.Fatal(err)
		}
		if _, err := v.WaitFor(ctx, vm.BootComplete); err != nil {
			t.Fatal(err)
		}
		// busybox sh reads lines in its own editor; its terminal is a
		// pseudo-terminal relayed to the console (a session leader's exit
		// would hang up a real tty).
		typeWait(ctx, t, v, "echo sum=$((6*7)) tty=$(busybox tty)\r", `^sum=42 tty=/dev/pts/\d+$`)
		typeWait(ctx, t, v, "exit\r", shellEnded)
		powerButton(t, v)
	})
}

// TestDebugShellContainers: from the built-in shell on the serial console,
// photonctl's verbs reach the control socket: the containers, a
// container's logs, a command run inside it (with and without a TTY), the
// boot timeline; then poweroff stops the container before the machine.
func TestDebugShellContainers(t *testing.T) {
	forEachMachine(t, []vm.Machine{vm.Q35}, func(t *testing.T, m vm.Machine) {
		overlay := t.TempDir()
		if err := os.CopyFS(filepath.Join(overlay, "images", "busybox"), os.DirFS(busyboxImage(t))); err != nil {
			t.Fatal(err)
		}
		files := vm.Overlay{
			"etc/photon/init.yaml": "hostname: " + shellHost + "\n",
			"etc/photon/containers/web.yaml": "image: oci:/images/busybox:latest\nnetwork_mode: host\n" +
				"command: [/bin/sh, -c, 'echo hello from web; exec /bin/busybox sleep 100000']\n",
		}
		host := vm.HostT(t)
		img := vm.InitramfsT(t, host, files, vm.BuildOptions{Compress: "none", OverlayDir: overlay})
		v := vm.StartT(t, vm.Config{Host: host, Machine: m, Initramfs: img, MemoryMB: 768, KernelArgs: []string{"photon.debug=shell"}})
		ctx, cancel := context.WithTimeout(context.Background(), 2*vmTimeout)
		defer cancel()
		waitAnyOrder(ctx, t, v, vm.BootComplete.String(), `hello from web`)
		prompt := promptOf(shellHost)
		expectOutput(t, "photonctl ps", shellRun(ctx, t, v, prompt, "photonctl ps"), `^NAME\b`, `^web\s.*\brunning\b`)
		expectOutput(t, "photonctl logs", shellRun(ctx, t, v, prompt, "photonctl logs web"), `hello from web$`)
		expectOutput(t, "logs", shellRun(ctx, t, v, prompt, "logs --tail 1 web"), `hello from web$`)
		expectOutput(t, "photonctl exec", shellRun(ctx, t, v, prompt, "photonctl exec web cat /etc/hostname"), `^web$`)
		// exec asks for a TTY: the container's command gets one.
		expectOutput(t, "exec", shellRun(ctx, t, v, prompt, "exec web sh -c 'test -t 0 && echo tty in web'"), `^tty in web$`)
		expectOutput(t, "timeline", shellRun(ctx, t, v, prompt, "photonctl timeline"), `apifs`, `debug-shell`)
		shellRun(ctx, t, v, prompt, "poweroff")
		expectShutdown(t, v, "shutdown: poweroff requested (debug shell)", "reboot(POWER_OFF)", "reboot: Power down")
		if _, ok := v.Find(regexp.MustCompile(`shutdown: stop-containers`)); !ok {
			t.Error("the containers were not stopped before the poweroff")
		}
	})
}

// TestEmergencyShellRequiredMount: a required mount whose disk does not
// exist stops the boot in the emergency state, and the debug shell comes
// up on the console with the error shown; the machine still powers off
// from it.
func TestEmergencyShellRequiredMount(t *testing.T) {
	forEachMachine(t, []vm.Machine{vm.Q35}, func(t *testing.T, m vm.Machine) {
		config := "hostname: broken-mount\n" +
			"mounts:\n" +
			"  - source: LABEL=no-such-disk\n" +
			"    target: /data\n" +
			"    timeout: 1s\n" +
			"    required: true\n"
		host := vm.HostT(t)
		img := vm.InitramfsT(t, host, vm.Overlay{"etc/photon/init.yaml": config}, vm.BuildOptions{Compress: "none"})
		v := vm.StartT(t, vm.Config{Host: host, Machine: m, Initramfs: img})
		ctx := phase(t)
		const failure = `boot step mounts: required mount LABEL=no-such-disk on /data: `
		waitAnyOrder(ctx, t, v, `EMERGENCY: `+regexp.QuoteMeta(failure), `photon-init debug shell: the boot failed: `+regexp.QuoteMeta(failure))
		if _, ok := v.Find(vm.BootComplete); ok {
			t.Error("the boot completed although a required mount failed")
		}
		prompt := promptOf("broken-mount")
		expectOutput(t, "mount", shellRun(ctx, t, v, prompt, "mount"), `^photon-missing on /data type tmpfs \(ro`)
		shellRun(ctx, t, v, prompt, "poweroff")
		expectShutdown(t, v, "shutdown: poweroff requested (debug shell)", "reboot(POWER_OFF)", "reboot: Power down")
	})
}
