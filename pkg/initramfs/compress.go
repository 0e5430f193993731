package initramfs

import (
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Compression is an initramfs compression format the kernel can unpack.
type Compression string

// The supported compressions. For booting under TCG, uncompressed and lz4
// are fastest (the kernel decompresses on one CPU); see
// shared/vm-testing.md.
const (
	// None writes the plain cpio archive.
	None Compression = "none"
	// Gzip compresses with gzip (klauspost/compress, default level).
	Gzip Compression = "gzip"
	// LZ4 is the legacy lz4 frame format ("lz4 -l", 8 MiB blocks), the
	// only lz4 format the kernel's initramfs unpacker reads.
	LZ4 Compression = "lz4"
	// Zstd compresses with zstd (klauspost/compress, default level, one
	// encoder goroutine so output is reproducible).
	Zstd Compression = "zstd"
)

// Compressions lists the supported compressions, None first.
func Compressions() []Compression { return []Compression{None, Gzip, LZ4, Zstd} }

// ParseCompression parses a compression name ("" means None).
func ParseCompression(s string) (Compression, error) {
	if s == "" {
		return None, nil
	}
	for _, c := range Compressions() {
		if strings.EqualFold(s, string(c)) {
			return c, nil
		}
	}
	return "", fmt.Errorf("unknown compression %q (want none, gzip, lz4 or zstd)", s)
}

// nopCloser is an io.WriteCloser whose Close does nothing.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// compressor wraps w in c's encoder; closing it flushes the encoder but
// does not close w. Every encoder is deterministic: the same input gives
// the same bytes.
func compressor(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case None, "":
		return nopCloser{w}, nil
	case Gzip:
		// No name and a zero mtime in the header, so output is
		// reproducible.
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case LZ4:
		zw := lz4.NewWriter(w)
		if err := zw.Apply(lz4.LegacyOption(true), lz4.ConcurrencyOption(1)); err != nil {
			return nil, fmt.Errorf("lz4: %w", err)
		}
		return zw, nil
	case Zstd:
		zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zw, nil
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}
