package vm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Accelerators QEMU runs guests with.
const (
	// AccelKVM runs the guest on the host CPU through /dev/kvm.
	AccelKVM = "kvm"
	// AccelTCG emulates the guest CPU (slower, works everywhere).
	AccelTCG = "tcg"
)

// Host is what booting a VM needs from the machine the tests run on.
// DetectHost fills it in; it is read-only afterwards and safe to share
// between tests.
type Host struct {
	// QEMU is the qemu-system-x86_64 binary.
	QEMU string
	// Kernel is the guest kernel.
	Kernel Kernel
	// TSCkHz is the host TSC frequency passed as tsc_early_khz= (0: not
	// passed).
	TSCkHz int
	// Accel is AccelKVM or AccelTCG.
	Accel string
	// CacheDir holds the extracted kernel and the accelerator probe.
	CacheDir string
	// Repo is the photon-init repository root.
	Repo string
}

// HostOptions overrides what DetectHost would otherwise find itself.
type HostOptions struct {
	// Repo is the repository root (default: found from the working
	// directory, see RepoRoot).
	Repo string
	// CacheDir defaults to $PHOTON_CACHE, else Repo/.cache.
	CacheDir string
	// KernelImage defaults to FindKernelImage.
	KernelImage string
	// Accel is AccelKVM or AccelTCG; default $PHOTON_ACCEL, else probed.
	Accel string
	// QEMU defaults to $PHOTON_QEMU, else qemu-system-x86_64 from PATH.
	QEMU string
}

// DetectHost finds QEMU and the kernel, extracts the kernel's vmlinux
// into the cache, reads the TSC frequency and picks the accelerator: KVM
// when a trial boot under KVM reaches the kernel's panic for lack of a
// root file system (nested KVM often hangs or fails), else TCG. The probe's
// answer is cached for the host's current boot.
func DetectHost(ctx context.Context, opts HostOptions) (*Host, error) {
	h := &Host{Repo: opts.Repo, CacheDir: opts.CacheDir, QEMU: opts.QEMU, Accel: opts.Accel}
	if h.Repo == "" {
		root, err := RepoRoot()
		if err != nil {
			return nil, err
		}
		h.Repo = root
	}
	if h.CacheDir == "" {
		h.CacheDir = os.Getenv("PHOTON_CACHE")
	}
	if h.CacheDir == "" {
		h.CacheDir = filepath.Join(h.Repo, ".cache")
	}
	if h.QEMU == "" {
		h.QEMU = os.Getenv("PHOTON_QEMU")
	}
	if h.QEMU == "" {
		h.QEMU = "qemu-system-x86_64"
	}
	qemu, err := exec.LookPath(h.QEMU)
	if err != nil {
		return nil, fmt.Errorf("finding QEMU (install qemu-system-x86: make deps): %w", err)
	}
	h.QEMU = qemu
	if h.Kernel, err = PrepareKernel(opts.KernelImage, h.CacheDir); err != nil {
		return nil, err
	}
	if h.TSCkHz, err = HostTSCkHz(); err != nil {
		return nil, err
	}
	if h.Accel == "" {
		h.Accel = os.Getenv("PHOTON_ACCEL")
	}
	switch h.Accel {
	case AccelKVM, AccelTCG:
	case "":
		h.Accel = h.probeAccel(ctx)
	default:
		return nil, fmt.Errorf("accelerator %q: want %q or %q", h.Accel, AccelKVM, AccelTCG)
	}
	return h, nil
}

// RepoRoot returns the root of the photon-init repository, found by
// walking up from the working directory to the go.mod that declares the
// module.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/photon-init/photon-init\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the repository: no go.mod of github.com/photon-init/photon-init above the working directory")
		}
		dir = parent
	}
}

// probeAccel returns AccelKVM when /dev/kvm opens and a kernel boots
// under it, else AccelTCG.
func (h *Host) probeAccel(ctx context.Context) string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return AccelTCG
	}
	f.Close()
	key := h.accelCacheKey()
	cache := filepath.Join(h.CacheDir, "accel-"+key)
	if data, err := os.ReadFile(cache); err == nil {
		if a := strings.TrimSpace(string(data)); a == AccelKVM || a == AccelTCG {
			return a
		}
	}
	accel := AccelTCG
	if h.kvmBoots(ctx) {
		accel = AccelKVM
	}
	if ctx.Err() == nil {
		// Best effort: without the cache the next run probes again.
		_ = os.WriteFile(cache, []byte(accel+"\n"), 0o644)
	}
	return accel
}

// accelCacheKey names the probe's answer by QEMU binary, kernel and host
// boot: any of them changing may change the answer.
func (h *Host) accelCacheKey() string {
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	var qemuMtime int64
	if st, err := os.Stat(h.QEMU); err == nil {
		qemuMtime = st.ModTime().UnixNano()
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%s\x00%s", h.QEMU, qemuMtime, h.Kernel.VMLinux, bytes.TrimSpace(bootID)))
	return hex.EncodeToString(sum[:8])
}

// kvmBoots boots the kernel without an initramfs under KVM: it gets as far
// as panicking for lack of a root file system in well under a second when
// KVM works; broken nested KVM fails at once or hangs.
func (h *Host) kvmBoots(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	args := []string{
		"-machine", "microvm", "-accel", "kvm", "-cpu", "max", "-m", "128", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", h.Kernel.VMLinux,
		"-append", strings.Join(h.baseKernelArgs(), " "),
	}
	cmd := exec.CommandContext(ctx, h.QEMU, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = time.Second
	_ = cmd.Run() // The exit status means nothing; the console does.
	return ctx.Err() == nil && bytes.Contains(out.Bytes(), []byte("Kernel panic"))
}

// baseKernelArgs are the kernel command line options every boot gets.
func (h *Host) baseKernelArgs() []string {
	args := []string{"console=ttyS0", "panic=-1"}
	if h.TSCkHz > 0 {
		args = append(args, fmt.Sprintf("tsc_early_khz=%d", h.TSCkHz))
	}
	return args
}
