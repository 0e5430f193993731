package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/photon-init/photon-init/test/vm"
)

// vmTimeout bounds each phase of a VM test (boot, shutdown): generous,
// since under TCG a boot takes a few seconds and two VMs share two cores.
const vmTimeout = 60 * time.Second

// shutdownSteps are the steps photon-init reports, in order, between the
// shutdown request and the reboot(2) call.
func shutdownSteps() []string {
	return []string{"stop-processes", "kill-remaining", "sync", "unmount"}
}

// phase returns a context for one phase of a test, ended with the test.
func phase(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), vmTimeout)
	t.Cleanup(cancel)
	return ctx
}

// forEachMachine runs test as a parallel subtest per machine type, in
// parallel with the other tests (vm.StartT keeps to two VMs at a time).
func forEachMachine(t *testing.T, machines []vm.Machine, test func(t *testing.T, m vm.Machine)) {
	t.Parallel()
	for _, m := range machines {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			test(t, m)
		})
	}
}

// bootPhoton builds an initramfs of photon-init with files as the overlay,
// boots it on machine m with the extra kernel arguments, and waits for
// "boot complete", checking that photon-init's first line came first.
func bootPhoton(t *testing.T, m vm.Machine, files vm.Overlay, kernelArgs ...string) (*vm.VM, vm.BootTimes) {
	t.Helper()
	host := vm.HostT(t)
	img := vm.InitramfsT(t, host, files, vm.BuildOptions{Compress: "none"})
	v := vm.StartT(t, vm.Config{Host: host, Machine: m, Initramfs: img, KernelArgs: kernelArgs})
	ctx := phase(t)
	if _, err := v.WaitFor(ctx, vm.PhotonStart); err != nil {
		t.Fatal(err)
	}
	done, err := v.WaitForLine(ctx, vm.BootComplete)
	if err != nil {
		t.Fatal(err)
	}
	if first, ok := v.Find(regexp.MustCompile(`photon-init`)); !ok || !vm.PhotonStart.MatchString(first.Text) {
		t.Errorf("photon-init's first line is %q, want %q", first.Text, vm.PhotonStart)
	}
	times, ok := vm.ParseBootComplete(done.Text)
	if !ok {
		t.Fatalf("cannot parse the boot-complete line %q", done.Text)
	}
	t.Logf("%s (%s): boot complete %v after kernel start, %v after PID-1 start, %v after QEMU started",
		m, host.Accel, times.SinceKernel, times.SincePID1, done.At.Round(time.Millisecond))
	return v, times
}

// TestBoot boots photon-init on each machine type to "boot complete";
// coldplug must have found the virtio NIC and loaded virtio_net.
func TestBoot(t *testing.T) {
	forEachMachine(t, vm.Machines(), func(t *testing.T, m vm.Machine) {
		v, _ := bootPhoton(t, m, nil)
		if _, ok := v.Find(regexp.MustCompile(`kmod: loaded virtio_net\b`)); !ok {
			t.Error("coldplug did not load virtio_net: no \"kmod: loaded virtio_net\" on the console")
		}
	})
}

// expectShutdown checks the console from the shutdown request on: the
// request line, each step in order, the reboot(2) call, then QEMU's exit
// and the kernel's own last word.
func expectShutdown(t *testing.T, v *vm.VM, request, syscall, kernelSays string) {
	t.Helper()
	ctx := phase(t)
	if _, err := v.WaitFor(ctx, regexp.MustCompile(regexp.QuoteMeta(request))); err != nil {
		t.Fatal(err)
	}
	for _, step := range shutdownSteps() {
		if _, err := v.WaitFor(ctx, regexp.MustCompile(`shutdown: `+regexp.QuoteMeta(step)+`\b`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.WaitFor(ctx, regexp.MustCompile(regexp.QuoteMeta("shutdown: "+syscall))); err != nil {
		t.Fatal(err)
	}
	if err := v.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Find(regexp.MustCompile(regexp.QuoteMeta(kernelSays))); !ok {
		t.Errorf("the kernel never said %q: the reboot(2) call did not happen", kernelSays)
	}
	var events []string
	for _, e := range v.Events() {
		events = append(events, e.Name+" "+string(e.Data))
	}
	t.Logf("QMP events: %s", strings.Join(events, "; "))
}

// TestPoweroff presses the ACPI power button (QMP system_powerdown) after
// boot: photon-init reads KEY_POWER from the "Power Button" input device
// and powers off. On microvm the button is the ACPI generic event
// device's; the kernel reports it as PNP0C0C and it works the same way.
func TestPoweroff(t *testing.T) {
	forEachMachine(t, vm.Machines(), func(t *testing.T, m vm.Machine) {
		v, _ := bootPhoton(t, m, nil)
		if err := v.Powerdown(); err != nil {
			t.Fatal(err)
		}
		expectShutdown(t, v, "shutdown: poweroff requested (", "reboot(POWER_OFF)", "reboot: Power down")
	})
}

// TestReboot presses Ctrl-Alt-Del on the PS/2 keyboard (q35 only: microvm
// has no keyboard): the kernel sends SIGINT to PID 1, which reboots; with
// -no-reboot QEMU then exits.
func TestReboot(t *testing.T) {
	forEachMachine(t, []vm.Machine{vm.Q35}, func(t *testing.T, m vm.Machine) {
		v, _ := bootPhoton(t, m, nil)
		if err := v.SendKeys("ctrl-alt-delete"); err != nil {
			t.Fatal(err)
		}
		expectShutdown(t, v, "shutdown: reboot requested (", "reboot(RESTART)", "reboot: Restarting system")
	})
}

// TestBadConfig boots with an unknown field on line 3 of
// /etc/photon/init.yaml: photon-init reports the error with file and line
// and still completes the boot.
func TestBadConfig(t *testing.T) {
	forEachMachine(t, []vm.Machine{vm.Q35}, func(t *testing.T, m vm.Machine) {
		config := "# photon-init e2e: line 3 misspells a field\n" +
			"hostname: e2e-bad-config\n" +
			"hostnme: typo\n"
		v, _ := bootPhoton(t, m, vm.Overlay{"etc/photon/init.yaml": config})
		l, ok := v.Find(regexp.MustCompile(`ERROR.*/etc/photon/init\.yaml:3\b`))
		if !ok {
			t.Fatal(`no line with "ERROR" and "/etc/photon/init.yaml:3" on the console`)
		}
		t.Logf("reported: %s", l.Text)
	})
}
