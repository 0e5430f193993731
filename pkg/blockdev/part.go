package blockdev

import (
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"
)

// Partition is one entry of a partition table.
type Partition struct {
	// Number is the partition's number as the kernel gives it (vda1 is
	// 1): the GPT entry's index plus one, or 1-4 for MBR primary
	// partitions and 5 onwards for logical ones.
	Number int
	// UUID is the PARTUUID: the GPT partition GUID, or "SSSSSSSS-NN" (disk
	// signature, partition number) for an MBR.
	UUID string
	// Name is the GPT partition name (PARTLABEL); MBR has none.
	Name string
	// Type is the GPT partition type GUID, or the MBR type byte in hex.
	Type string
	// Start and Size are in bytes.
	Start, Size int64
}

// Table is a disk's partition table.
type Table struct {
	// Kind is "gpt" or "dos".
	Kind string
	// ID is the disk GUID of a GPT, or the MBR disk signature in hex.
	ID string
	// Partitions are the used entries, by number.
	Partitions []Partition
}

// Partition returns the partition numbered n.
func (t *Table) Partition(n int) (Partition, bool) {
	for _, p := range t.Partitions {
		if p.Number == n {
			return p, true
		}
	}
	return Partition{}, false
}

// ReadPartitions reads the partition table of a disk (or disk image),
// trying a GPT at sectorSize (0 means 512, then 4096) before an MBR. It
// returns nil and no error when the disk has no partition table.
func ReadPartitions(r io.ReaderAt, sectorSize int64) (*Table, error) {
	sizes := []int64{512, 4096}
	if sectorSize > 0 {
		sizes = []int64{sectorSize}
	}
	mbr, err := readAt(r, 0, 512)
	if err != nil {
		return nil, err
	}
	if mbr == nil || mbr[510] != 0x55 || mbr[511] != 0xAA {
		return nil, nil
	}
	for _, ss := range sizes {
		t, err := readGPT(r, ss)
		if err != nil || t != nil {
			return t, err
		}
	}
	return readMBR(r, mbr)
}

// GPT header fields (UEFI specification, 5.3).
const (
	gptSignature   = "EFI PART"
	gptMaxEntries  = 4096
	gptMinEntrySz  = 128
	gptMaxHeaderSz = 512
)

// readGPT reads the primary GPT header at LBA 1 of ss-byte sectors. A
// missing signature is no table; a header or entry array failing its CRC is
// an error.
func readGPT(r io.ReaderAt, ss int64) (*Table, error) {
	hdr, err := readAt(r, ss, 512)
	if hdr == nil || string(hdr[0:8]) != gptSignature {
		return nil, err
	}
	hdrSize := le.Uint32(hdr[12:])
	if hdrSize < 92 || hdrSize > gptMaxHeaderSz {
		return nil, fmt.Errorf("gpt: header size %d", hdrSize)
	}
	check := append([]byte(nil), hdr[:hdrSize]...)
	copy(check[16:20], []byte{0, 0, 0, 0})
	if crc32.ChecksumIEEE(check) != le.Uint32(hdr[16:]) {
		return nil, fmt.Errorf("gpt: header checksum mismatch")
	}
	entriesLBA := int64(le.Uint64(hdr[72:]))
	n := le.Uint32(hdr[80:])
	esz := le.Uint32(hdr[84:])
	if n > gptMaxEntries || esz < gptMinEntrySz || esz%8 != 0 || esz > 4096 {
		return nil, fmt.Errorf("gpt: %d entries of %d bytes", n, esz)
	}
	entries, err := readAt(r, entriesLBA*ss, int(n*esz))
	if err != nil {
		return nil, fmt.Errorf("gpt entries: %w", err)
	}
	if entries == nil {
		return nil, fmt.Errorf("gpt: entry array beyond the end of the disk")
	}
	if crc32.ChecksumIEEE(entries) != le.Uint32(hdr[88:]) {
		return nil, fmt.Errorf("gpt: partition entries checksum mismatch")
	}
	t := &Table{Kind: "gpt", ID: formatGUID(hdr[56:72])}
	for i := uint32(0); i < n; i++ {
		e := entries[i*esz : (i+1)*esz]
		if isZero(e[0:16]) {
			continue
		}
		first, last := int64(le.Uint64(e[32:])), int64(le.Uint64(e[40:]))
		t.Partitions = append(t.Partitions, Partition{
			Number: int(i) + 1,
			UUID:   formatGUID(e[16:32]),
			Name:   utf16String(e[56:128]),
			Type:   formatGUID(e[0:16]),
			Start:  first * ss,
			Size:   (last - first + 1) * ss,
		})
	}
	return t, nil
}

// formatGUID renders a GUID stored as UEFI does: the first three fields
// little-endian, the rest as bytes.
func formatGUID(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", le.Uint32(b[0:]), le.Uint16(b[4:]), le.Uint16(b[6:]), b[8:10], b[10:16])
}

// utf16String decodes a NUL-terminated UTF-16LE name.
func utf16String(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := le.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// MBR partition types that hold logical partitions.
func isExtended(t byte) bool { return t == 0x05 || t == 0x0F || t == 0x85 }

// maxLogical bounds the chain of extended boot records.
const maxLogical = 128

// readMBR reads a DOS partition table (sector 0, 512-byte sectors, as MBR
// addresses always are) with its chain of logical partitions.
func readMBR(r io.ReaderAt, mbr []byte) (*Table, error) {
	var types [4]byte
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i:]
		if e[0] != 0 && e[0] != 0x80 {
			return nil, nil // not a partition table (a boot sector of some other kind)
		}
		types[i] = e[4]
	}
	if types == [4]byte{} {
		return nil, nil
	}
	if _, ok, _ := probeVFAT(r); ok {
		return nil, nil // a FAT "superfloppy": its boot sector also ends in 55 AA
	}
	sig := le.Uint32(mbr[440:])
	t := &Table{Kind: "dos", ID: fmt.Sprintf("%08x", sig)}
	add := func(n int, typ byte, start, size uint32) {
		t.Partitions = append(t.Partitions, Partition{
			Number: n, UUID: fmt.Sprintf("%08x-%02x", sig, n), Type: fmt.Sprintf("%02x", typ),
			Start: int64(start) * 512, Size: int64(size) * 512,
		})
	}
	var extStart uint32
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i:]
		if types[i] == 0 {
			continue
		}
		start, size := le.Uint32(e[8:]), le.Uint32(e[12:])
		add(i+1, types[i], start, size)
		if isExtended(types[i]) && extStart == 0 {
			extStart = start
		}
	}
	if extStart == 0 {
		return t, nil
	}
	// Each EBR holds one logical partition (relative to the EBR) and a
	// link to the next EBR (relative to the extended partition).
	ebr, n := extStart, 5
	for i := 0; i < maxLogical; i++ {
		sec, err := readAt(r, int64(ebr)*512, 512)
		if err != nil {
			return t, fmt.Errorf("mbr: logical partition %d: %w", n, err)
		}
		if sec == nil || sec[510] != 0x55 || sec[511] != 0xAA {
			break
		}
		e0, e1 := sec[446:], sec[462:]
		if e0[4] != 0 && le.Uint32(e0[12:]) != 0 {
			add(n, e0[4], ebr+le.Uint32(e0[8:]), le.Uint32(e0[12:]))
			n++
		}
		next := le.Uint32(e1[8:])
		if !isExtended(e1[4]) || next == 0 {
			break
		}
		ebr = extStart + next
	}
	return t, nil
}
