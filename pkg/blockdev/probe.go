package blockdev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Filesystem is what a device's superblock says about it.
type Filesystem struct {
	// Type is the filesystem type as mount(2) names it ("ext4", "xfs",
	// "vfat", "btrfs"), or "swap" for a swap area; "" when nothing known
	// was found.
	Type string
	// Label is the filesystem's label ("" when it has none).
	Label string
	// UUID is the filesystem's UUID as blkid prints it: lower-case
	// 8-4-4-4-12 hex, or XXXX-XXXX for FAT ("" when it has none).
	UUID string
}

// ErrNoSignature means no known filesystem or swap signature was found.
var ErrNoSignature = errors.New("no known filesystem signature")

// prober recognises one kind of superblock. It returns ok=false when the
// signature is absent; an error only when reading failed.
type prober func(r io.ReaderAt) (fs Filesystem, ok bool, err error)

// probers run in this order; the weakest signature (FAT's) comes last.
var probers = []prober{probeXFS, probeExt, probeBtrfs, probeSwap, probeVFAT}

// Probe reads the superblocks of the device or image r and returns the
// first filesystem it recognises, or ErrNoSignature.
func Probe(r io.ReaderAt) (Filesystem, error) {
	for _, p := range probers {
		fs, ok, err := p(r)
		if err != nil {
			return Filesystem{}, err
		}
		if ok {
			return fs, nil
		}
	}
	return Filesystem{}, ErrNoSignature
}

// ProbeFile opens path (a block device or an image file) read-only and
// probes it.
func ProbeFile(path string) (Filesystem, error) {
	f, err := os.Open(path)
	if err != nil {
		return Filesystem{}, fmt.Errorf("probe: %w", err)
	}
	defer f.Close()
	fs, err := Probe(f)
	if err != nil && !errors.Is(err, ErrNoSignature) {
		return fs, fmt.Errorf("probe %s: %w", path, err)
	}
	return fs, err
}

// readAt reads n bytes at off. A device or image too short to hold them
// yields nil and no error: whatever was looked for is not there.
func readAt(r io.ReaderAt, off int64, n int) ([]byte, error) {
	buf := make([]byte, n)
	got, err := r.ReadAt(buf, off)
	if got == n {
		return buf, nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, nil
	}
	return nil, fmt.Errorf("read %d bytes at %d: %w", n, off, err)
}

var (
	le = binary.LittleEndian
	be = binary.BigEndian
)

// cString returns b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// formatUUID renders 16 bytes stored in RFC 4122 (big-endian) order; an
// all-zero UUID is no UUID.
func formatUUID(b []byte) string {
	if isZero(b) {
		return ""
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func powerOfTwo(n uint64) bool { return n != 0 && n&(n-1) == 0 }

// ext2/3/4 (libblkid superblocks/ext.c).
const (
	extSuperOffset = 1024
	extMagic       = 0xEF53

	extCompatHasJournal  = 0x0004
	extIncompatJournalDv = 0x0008
	// Features ext2 and ext3 know; anything else makes ext4.
	ext2IncompatSupp = 0x0002 | 0x0010          // FILETYPE | META_BG
	ext3IncompatSupp = ext2IncompatSupp | 0x04  // + RECOVER
	extROCompatSupp  = 0x0001 | 0x0002 | 0x0004 // SPARSE_SUPER | LARGE_FILE | BTREE_DIR
)

func probeExt(r io.ReaderAt) (Filesystem, bool, error) {
	sb, err := readAt(r, extSuperOffset, 1024)
	if sb == nil {
		return Filesystem{}, false, err
	}
	if le.Uint16(sb[0x38:]) != extMagic {
		return Filesystem{}, false, nil
	}
	compat, incompat, roCompat := le.Uint32(sb[0x5C:]), le.Uint32(sb[0x60:]), le.Uint32(sb[0x64:])
	fs := Filesystem{Label: cString(sb[0x78 : 0x78+16]), UUID: formatUUID(sb[0x68 : 0x68+16])}
	switch {
	case incompat&extIncompatJournalDv != 0:
		fs.Type = "jbd" // an external journal: not mountable
	case compat&extCompatHasJournal == 0 && roCompat&^extROCompatSupp == 0 && incompat&^ext2IncompatSupp == 0:
		fs.Type = "ext2"
	case compat&extCompatHasJournal != 0 && roCompat&^extROCompatSupp == 0 && incompat&^ext3IncompatSupp == 0:
		fs.Type = "ext3"
	default:
		fs.Type = "ext4"
	}
	return fs, true, nil
}

// xfs (libblkid superblocks/xfs.c).
func probeXFS(r io.ReaderAt) (Filesystem, bool, error) {
	sb, err := readAt(r, 0, 512)
	if sb == nil {
		return Filesystem{}, false, err
	}
	if string(sb[0:4]) != "XFSB" {
		return Filesystem{}, false, nil
	}
	blockSize := uint64(be.Uint32(sb[4:]))
	sectSize := uint64(be.Uint16(sb[102:]))
	if !powerOfTwo(blockSize) || blockSize < 512 || blockSize > 65536 ||
		!powerOfTwo(sectSize) || sectSize < 512 || sectSize > 32768 {
		return Filesystem{}, false, nil
	}
	return Filesystem{Type: "xfs", Label: cString(sb[108 : 108+12]), UUID: formatUUID(sb[32:48])}, true, nil
}

// btrfs (libblkid superblocks/btrfs.c): the primary superblock at 64 KiB.
const btrfsSuperOffset = 64 << 10

func probeBtrfs(r io.ReaderAt) (Filesystem, bool, error) {
	sb, err := readAt(r, btrfsSuperOffset, 4096)
	if sb == nil {
		return Filesystem{}, false, err
	}
	if string(sb[64:72]) != "_BHRfS_M" || le.Uint64(sb[48:]) != btrfsSuperOffset {
		return Filesystem{}, false, nil
	}
	return Filesystem{Type: "btrfs", Label: cString(sb[299 : 299+256]), UUID: formatUUID(sb[32:48])}, true, nil
}

// swap (libblkid superblocks/swap.c): the signature ends the first page,
// whatever the page size of the machine that made it.
func probeSwap(r io.ReaderAt) (Filesystem, bool, error) {
	for _, page := range []int64{4096, 8192, 16384, 32768, 65536} {
		sig, err := readAt(r, page-10, 10)
		if sig == nil {
			return Filesystem{}, false, err
		}
		switch s := string(sig); {
		case s == "SWAPSPACE2":
			hdr, err := readAt(r, 1024, 44)
			if hdr == nil {
				return Filesystem{}, false, err
			}
			// version 1 and a last page are what mkswap writes.
			if le.Uint32(hdr[0:]) != 1 || le.Uint32(hdr[4:]) == 0 {
				continue
			}
			return Filesystem{Type: "swap", UUID: formatUUID(hdr[12:28]), Label: cString(hdr[28:44])}, true, nil
		case s == "SWAP-SPACE":
			return Filesystem{Type: "swap"}, true, nil
		case strings.HasPrefix(s, "S1SUSPEND") || strings.HasPrefix(s, "S2SUSPEND") ||
			strings.HasPrefix(s, "ULSUSPEND") || s == "LINHIB0001":
			return Filesystem{Type: "swsuspend"}, true, nil
		}
	}
	return Filesystem{}, false, nil
}

// vfat (libblkid superblocks/vfat.c): a BIOS parameter block that makes
// sense and a FAT type string.
func probeVFAT(r io.ReaderAt) (Filesystem, bool, error) {
	bs, err := readAt(r, 0, 512)
	if bs == nil {
		return Filesystem{}, false, err
	}
	sectorSize := uint64(le.Uint16(bs[11:]))
	clusterSectors := uint64(bs[13])
	reserved := le.Uint16(bs[14:])
	fats := bs[16]
	media := bs[21]
	if !powerOfTwo(sectorSize) || sectorSize < 512 || sectorSize > 4096 ||
		!powerOfTwo(clusterSectors) || reserved == 0 || fats == 0 ||
		(media != 0xF0 && media < 0xF8) {
		return Filesystem{}, false, nil
	}
	fat16Sig := string(bs[54:62])
	fat32Sig := string(bs[82:90])
	var serialOff, labelOff int
	switch {
	case le.Uint16(bs[22:]) == 0 && le.Uint32(bs[36:]) != 0 && fat32Sig == "FAT32   ":
		// FAT32: no 16-bit FAT size, extended boot record at 0x40.
		if bs[0x42] != 0x29 && bs[0x42] != 0x28 {
			return Filesystem{Type: "vfat"}, true, nil
		}
		serialOff, labelOff = 0x43, 0x47
	case fat16Sig == "FAT12   " || fat16Sig == "FAT16   " || fat16Sig == "FAT     ":
		if bs[0x26] != 0x29 && bs[0x26] != 0x28 {
			return Filesystem{Type: "vfat"}, true, nil
		}
		serialOff, labelOff = 0x27, 0x2B
	default:
		return Filesystem{}, false, nil
	}
	serial := le.Uint32(bs[serialOff:])
	label := strings.TrimRight(cString(bs[labelOff:labelOff+11]), " ")
	if label == "NO NAME" {
		label = ""
	}
	return Filesystem{Type: "vfat", Label: label, UUID: fmt.Sprintf("%04X-%04X", serial>>16, serial&0xffff)}, true, nil
}
