// Package vm boots photon-init (or any other /init) in QEMU for end-to-end
// tests and benchmarks.
//
// The harness prepares a distribution kernel once — it extracts the
// uncompressed vmlinux from /boot/vmlinuz-* into the repository's .cache/
// so that QEMU can boot it as PVH, which saves seconds of decompression
// per boot under TCG — and starts QEMU on the q35 or microvm machine with
// the serial console captured to a file and parsed line by line while the
// guest runs; VM.Type types on that console. A QMP connection drives the
// virtual hardware: the ACPI power button, key presses, and the events
// QEMU reports.
//
// A typical test:
//
//	func TestBoot(t *testing.T) {
//		host := vm.HostT(t)
//		img := vm.InitramfsT(t, host, vm.Overlay{"etc/photon/init.yaml": "hostname: t\n"})
//		m := vm.StartT(t, vm.Config{Host: host, Machine: vm.Q35, Initramfs: img})
//		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
//		defer cancel()
//		if _, err := m.WaitFor(ctx, vm.BootComplete); err != nil {
//			t.Fatal(err)
//		}
//	}
//
// StartT runs at most two VMs at a time on the machine (PHOTON_VM_SLOTS
// changes that), kills the VM when the test ends, fails the test when the
// console shows a kernel panic, and dumps the console into the test log
// when the test failed.
//
// QEMU's exit status means nothing here (a guest whose init died exits 0
// with panic=-1 -no-reboot): judge a VM by what its console printed and
// what the host could reach.
//
// Environment: PHOTON_KERNEL picks the kernel image (default: the newest
// /boot/vmlinuz-*), PHOTON_MODULES its modules directory (default:
// /lib/modules/VERSION), PHOTON_ACCEL forces "kvm" or "tcg" (default: KVM
// when a trial boot under it works, else TCG), PHOTON_CACHE the cache
// directory (default: .cache/ in the repository), PHOTON_QEMU the QEMU
// binary.
package vm
