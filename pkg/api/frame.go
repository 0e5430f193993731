package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FrameType says what an exec frame carries.
type FrameType byte

// The frame types of an exec stream (server to client).
const (
	// FrameStdout carries the process's standard output (all of a TTY's
	// output).
	FrameStdout FrameType = 1
	// FrameStderr carries the process's standard error.
	FrameStderr FrameType = 2
	// FrameExit ends the stream: its payload is ExecInfo as JSON, with
	// ExitCode set (or Error, when the process could not be waited for).
	FrameExit FrameType = 3
)

// FrameHeaderSize is the size of a frame's header: the type, three zero
// bytes, and the payload's length as a big-endian uint32 (Docker's stdcopy
// layout).
const FrameHeaderSize = 8

// MaxFramePayload is the largest payload a frame may carry.
const MaxFramePayload = 1 << 20

// WriteFrame writes one frame; an empty p writes nothing for output
// frames.
func WriteFrame(w io.Writer, t FrameType, p []byte) error {
	if len(p) > MaxFramePayload {
		return fmt.Errorf("frame of %d bytes is larger than %d", len(p), MaxFramePayload)
	}
	if len(p) == 0 && t != FrameExit {
		return nil
	}
	buf := make([]byte, FrameHeaderSize+len(p))
	buf[0] = byte(t)
	binary.BigEndian.PutUint32(buf[4:FrameHeaderSize], uint32(len(p)))
	copy(buf[FrameHeaderSize:], p)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame into buf (grown as needed) and returns its type
// and payload, which is valid until the next call with the same buf.
func ReadFrame(r io.Reader, buf []byte) (FrameType, []byte, error) {
	var h [FrameHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	t := FrameType(h[0])
	switch t {
	case FrameStdout, FrameStderr, FrameExit:
	default:
		return 0, nil, fmt.Errorf("exec stream: unknown frame type %d", h[0])
	}
	n := binary.BigEndian.Uint32(h[4:])
	if n > MaxFramePayload {
		return 0, nil, fmt.Errorf("exec stream: frame of %d bytes is larger than %d", n, MaxFramePayload)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return t, buf, nil
}
