package image

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// compression is a layer blob's compression format.
type compression string

const (
	compressionNone  compression = "none"
	compressionGzip  compression = "gzip"
	compressionZstd  compression = "zstd"
	compressionBzip2 compression = "bzip2"
	compressionXz    compression = "xz"
)

// detectCompression tells the format from a blob's first bytes.
func detectCompression(magic []byte) compression {
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return compressionGzip
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return compressionZstd
	case bytes.HasPrefix(magic, []byte("BZh")):
		return compressionBzip2
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return compressionXz
	}
	return compressionNone
}

// mediaTypeCompression returns the compression a layer media type states,
// or "" when it states none ("" media type, or one not naming it).
func mediaTypeCompression(mt string) compression {
	switch {
	case mt == "":
		return ""
	case strings.HasSuffix(mt, "+gzip"), strings.HasSuffix(mt, ".tar.gzip"):
		return compressionGzip
	case strings.HasSuffix(mt, "+zstd"):
		return compressionZstd
	case strings.HasSuffix(mt, ".tar"), strings.HasSuffix(mt, "layer.v1.tar"):
		return compressionNone
	}
	return ""
}

// decompressor is an open decompressing reader.
type decompressor struct {
	io.Reader
	format compression
	close  func()
}

// Close releases the decoder (zstd's goroutines).
func (d *decompressor) Close() {
	if d.close != nil {
		d.close()
	}
}

// newDecompressor wraps r with the decoder its first bytes call for,
// checking them against the media type when it names a compression. All
// decoders are pure Go: gzip and zstd from klauspost/compress, bzip2 from
// the standard library, xz from ulikunitz/xz.
func newDecompressor(r io.Reader, mediaType string) (*decompressor, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(6)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read layer: %w", err)
	}
	format := detectCompression(magic)
	if want := mediaTypeCompression(mediaType); want != "" && want != format {
		return nil, fmt.Errorf("layer data is %s but its media type %s says %s", format, mediaType, want)
	}
	d := &decompressor{format: format}
	switch format {
	case compressionGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		d.Reader = zr
	case compressionZstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<30))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		d.Reader, d.close = zr, zr.Close
	case compressionBzip2:
		d.Reader = bzip2.NewReader(br)
	case compressionXz:
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		d.Reader = zr
	default:
		d.Reader = br
	}
	return d, nil
}
