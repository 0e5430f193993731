package vm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Kernel is a guest kernel ready to boot: the distribution's compressed
// image, the uncompressed vmlinux that QEMU boots as PVH, and the modules
// directory that belongs to it.
type Kernel struct {
	// Image is the compressed kernel as installed, e.g.
	// /boot/vmlinuz-6.1.0-56-amd64.
	Image string
	// VMLinux is the uncompressed ELF kernel extracted from Image (or Image
	// itself when it already is one).
	VMLinux string
	// Release is the kernel release, e.g. 6.1.0-56-amd64.
	Release string
	// Modules is the kernel's modules directory, e.g.
	// /lib/modules/6.1.0-56-amd64.
	Modules string
}

// FindKernelImage returns $PHOTON_KERNEL when set, else the most recently
// installed /boot/vmlinuz-*.
func FindKernelImage() (string, error) {
	if k := os.Getenv("PHOTON_KERNEL"); k != "" {
		if _, err := os.Stat(k); err != nil {
			return "", fmt.Errorf("PHOTON_KERNEL: %w", err)
		}
		return k, nil
	}
	images, err := filepath.Glob("/boot/vmlinuz-*")
	if err != nil {
		return "", fmt.Errorf("looking for /boot/vmlinuz-*: %w", err)
	}
	type candidate struct {
		path  string
		mtime int64
	}
	var found []candidate
	for _, p := range images {
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		found = append(found, candidate{p, st.ModTime().UnixNano()})
	}
	if len(found) == 0 {
		return "", errors.New("no kernel: /boot/vmlinuz-* not found (install linux-image-amd64: make deps, or set PHOTON_KERNEL)")
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].mtime != found[j].mtime {
			return found[i].mtime > found[j].mtime
		}
		return found[i].path > found[j].path
	})
	return found[0].path, nil
}

// PrepareKernel resolves the kernel image (see FindKernelImage), extracts
// its vmlinux into cacheDir unless already there, and finds its modules
// directory ($PHOTON_MODULES, else /lib/modules/RELEASE).
func PrepareKernel(image, cacheDir string) (Kernel, error) {
	if image == "" {
		var err error
		if image, err = FindKernelImage(); err != nil {
			return Kernel{}, err
		}
	}
	vmlinux, err := ExtractVMLinux(image, cacheDir)
	if err != nil {
		return Kernel{}, err
	}
	k := Kernel{Image: image, VMLinux: vmlinux, Release: kernelRelease(image)}
	k.Modules = os.Getenv("PHOTON_MODULES")
	if k.Modules == "" && k.Release != "" {
		k.Modules = filepath.Join("/lib/modules", k.Release)
	}
	if k.Modules != "" {
		if _, err := os.Stat(k.Modules); err != nil {
			return Kernel{}, fmt.Errorf("modules for kernel %s: %w", image, err)
		}
	}
	return k, nil
}

// kernelRelease derives the release from a Debian-style image name:
// vmlinuz-6.1.0-56-amd64 gives 6.1.0-56-amd64.
func kernelRelease(image string) string {
	base := filepath.Base(image)
	for _, prefix := range []string{"vmlinuz-", "vmlinux-", "bzImage-"} {
		if strings.HasPrefix(base, prefix) {
			return strings.TrimPrefix(base, prefix)
		}
	}
	return ""
}

// decompressor is a compression format a bzImage may carry its kernel in.
type decompressor struct {
	name  string
	magic []byte
	argv  []string
}

// decompressors lists the payload formats tried, xz first (Debian's).
// Each tool reads the payload from its start and stops at or complains
// about the data that follows it; the ELF check decides.
func decompressors() []decompressor {
	return []decompressor{
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, []string{"xz", "-dc", "--single-stream"}},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}, []string{"zstd", "-dcq"}},
		{"gzip", []byte{0x1f, 0x8b, 0x08}, []string{"gzip", "-dcq"}},
	}
}

// payloadOffsets returns, for each format, the offsets in image at which
// its magic occurs, in file order.
func payloadOffsets(image []byte, magic []byte) []int {
	var offsets []int
	for start := 0; ; {
		i := bytes.Index(image[start:], magic)
		if i < 0 {
			return offsets
		}
		offsets = append(offsets, start+i)
		start += i + 1
	}
}

// ExtractVMLinux returns the path of the uncompressed ELF kernel inside
// image, extracting it into cacheDir the first time. The cache entry is
// keyed by the image's path, size and modification time. An image that
// already is an ELF file is returned as it is.
func ExtractVMLinux(image, cacheDir string) (string, error) {
	abs, err := filepath.Abs(image)
	if err != nil {
		return "", fmt.Errorf("kernel image path: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("kernel image: %w", err)
	}
	if isELF(abs) {
		return abs, nil
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", abs, st.Size(), st.ModTime().UnixNano()))
	cached := filepath.Join(cacheDir, "vmlinux-"+filepath.Base(abs)+"-"+hex.EncodeToString(sum[:8]))
	if isELF(cached) {
		return cached, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("kernel cache: %w", err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return "", fmt.Errorf("reading kernel image: %w", err)
	}
	var tried []string
	for _, d := range decompressors() {
		for _, off := range payloadOffsets(data, d.magic) {
			tried = append(tried, fmt.Sprintf("%s@%d", d.name, off))
			if err := decompressTo(d, data[off:], cached); err == nil {
				return cached, nil
			} else if errors.Is(err, exec.ErrNotFound) {
				return "", fmt.Errorf("extracting vmlinux from %s: %w (install xz-utils/zstd: make deps)", abs, err)
			}
		}
	}
	return "", fmt.Errorf("extracting vmlinux from %s: no compressed payload decompressed to an ELF kernel (tried %s)", abs, strings.Join(tried, ", "))
}

// decompressTo runs d's tool on payload and, when the output is an ELF
// file, moves it to dst atomically (concurrent extractions are harmless).
func decompressTo(d decompressor, payload []byte, dst string) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".vmlinux-*")
	if err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	cmd := exec.Command(d.argv[0], d.argv[1:]...)
	cmd.Stdin = bytes.NewReader(payload)
	cmd.Stdout = tmp
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	runErr := cmd.Run()
	if closeErr := tmp.Close(); closeErr != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), closeErr)
	}
	if errors.Is(runErr, exec.ErrNotFound) {
		return runErr
	}
	// Tools other than xz --single-stream complain about the bzImage's
	// trailing data and exit non-zero although their output is complete:
	// the ELF check is what counts.
	if !isELF(tmp.Name()) {
		return fmt.Errorf("%s: output is not an ELF kernel: %v %s", d.name, runErr, strings.TrimSpace(stderr.String()))
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	return nil
}

// isELF reports whether path is a complete, parseable x86-64 ELF file.
func isELF(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || len(f.Progs) == 0 {
		return false
	}
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	// A truncated file still parses its headers: every loadable segment
	// must lie inside the file.
	for _, p := range f.Progs {
		if p.Off+p.Filesz > uint64(st.Size()) {
			return false
		}
	}
	return true
}

// HostTSCkHz returns the host's TSC frequency in kHz as /proc/cpuinfo's
// "cpu MHz" gives it (0 when unknown). The guest gets it as
// tsc_early_khz= so that it does not calibrate its TSC, which under TCG
// hangs or runs the guest clock fast.
func HostTSCkHz() (int, error) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0, fmt.Errorf("reading TSC frequency: %w", err)
	}
	defer f.Close()
	return parseCPUInfoKHz(f)
}

// parseCPUInfoKHz returns the first "cpu MHz" value in r, in kHz.
func parseCPUInfoKHz(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, fmt.Errorf("parsing cpu MHz %q: %w", value, err)
		}
		return int(mhz * 1000), nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading /proc/cpuinfo: %w", err)
	}
	return 0, nil
}
