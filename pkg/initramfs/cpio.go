package initramfs

import (
	"fmt"
	"io"
)

// newcWriter writes the SVR4 "newc" cpio format the kernel unpacks
// (Documentation/driver-api/early-userspace/buffer-format.rst): per entry a
// 110-byte ASCII header of "070701" and 13 eight-digit hex fields, the
// NUL-terminated name padded to 4 bytes, the data padded to 4 bytes; then a
// "TRAILER!!!" entry.
//
// It is written here rather than taken from github.com/cavaliergopher/cpio
// v1.0.1 because that writer has no fields for rdevmajor/rdevminor (it
// writes zeros, so /dev/console would be device 0,0, not 5,1) and sets the
// CRC magic by mutating a package-level slice; u-root's pkg/cpio gets
// devices right but its module (the only published v1 being retracted)
// brings in ~40 requirements that would raise shared dependencies of the
// whole binary. The format is small, and the tests read every archive back
// with cavaliergopher's reader and GNU cpio.
type newcWriter struct {
	w   io.Writer
	n   int64 // bytes written
	ino uint32
}

// newcHeader is one entry's header fields.
type newcHeader struct {
	name         string
	mode         uint32 // S_IFMT type bits | permission bits
	nlink        uint32
	mtime        uint32
	size         uint32
	rdevmajor    uint32
	rdevminor    uint32
	uid, gid     uint32
	noInodeCount bool    // the trailer has inode 0
	ino          uint32  // a hard link's inode number, 0 to allocate one
	assignIno    *uint32 // receives the allocated inode number
}

var zeroPad [4]byte

func (cw *newcWriter) write(p []byte) error {
	n, err := cw.w.Write(p)
	cw.n += int64(n)
	return err
}

func (cw *newcWriter) pad() error {
	if r := cw.n % 4; r != 0 {
		return cw.write(zeroPad[:4-r])
	}
	return nil
}

// header writes h; the caller then writes exactly h.size bytes of data and
// calls pad.
func (cw *newcWriter) header(h newcHeader) error {
	if len(h.name)+1 > 4096 {
		return fmt.Errorf("cpio: name too long: %s", h.name)
	}
	ino := h.ino
	if ino == 0 && !h.noInodeCount {
		cw.ino++
		ino = cw.ino
		if h.assignIno != nil {
			*h.assignIno = ino
		}
	}
	buf := make([]byte, 0, 110+len(h.name)+1)
	buf = append(buf, "070701"...)
	for _, v := range []uint32{
		ino, h.mode, h.uid, h.gid, h.nlink, h.mtime, h.size,
		0, 0, // devmajor, devminor of the (nonexistent) source filesystem
		h.rdevmajor, h.rdevminor,
		uint32(len(h.name) + 1),
		0, // check: only for "070702"
	} {
		buf = fmt.Appendf(buf, "%08X", v)
	}
	buf = append(buf, h.name...)
	buf = append(buf, 0)
	if err := cw.write(buf); err != nil {
		return err
	}
	return cw.pad()
}

// trailer ends the archive.
func (cw *newcWriter) trailer() error {
	if err := cw.header(newcHeader{name: "TRAILER!!!", nlink: 1, noInodeCount: true}); err != nil {
		return err
	}
	return cw.pad()
}
