package shell

import (
	"strings"
	"unicode/utf8"
)

// key is one editing action decoded from the terminal's bytes.
type key int

// The keys the editor understands. keyRune carries a character.
const (
	keyNone key = iota
	keyRune
	keyEnter
	keyBackspace
	keyDelete
	keyLeft
	keyRight
	keyWordLeft
	keyWordRight
	keyHome
	keyEnd
	keyUp
	keyDown
	keyInterrupt // Ctrl-C
	keyEOF       // Ctrl-D
	keyKillStart // Ctrl-U
	keyKillEnd   // Ctrl-K
	keyKillWord  // Ctrl-W, Alt-Backspace
	keyRedraw    // Ctrl-L
	keyTab
)

// maxSequence bounds an escape sequence; a longer one is garbage (line
// noise) and is dropped.
const maxSequence = 24

// decoderState is where the decoder is within an escape sequence.
type decoderState int

const (
	stGround decoderState = iota
	stEsc                 // after ESC
	stCSI                 // after ESC [
	stSS3                 // after ESC O
)

// decoder turns terminal input, fed one byte at a time as a serial line may
// deliver it, into keys. It keeps its state between calls, so a sequence
// split over several reads decodes the same as one read whole.
type decoder struct {
	state  decoderState
	params []byte // parameter and intermediate bytes of a CSI sequence
	utf    []byte // the bytes of an incomplete UTF-8 character
	// skipLF is set after a carriage return ended a line, so that the line
	// feed of a CR LF pair does not end another (empty) one.
	skipLF bool
}

// feed takes one byte and returns the key it completes, if any.
func (d *decoder) feed(b byte) (key, rune) {
	skipLF := d.skipLF
	d.skipLF = false
	switch d.state {
	case stEsc:
		return d.afterEsc(b)
	case stCSI:
		return d.inCSI(b)
	case stSS3:
		d.state = stGround
		if isControl(b) {
			return d.ground(b, false)
		}
		return ss3Key(b), 0
	}
	return d.ground(b, skipLF)
}

// ground decodes a byte outside any escape sequence.
func (d *decoder) ground(b byte, skipLF bool) (key, rune) {
	if len(d.utf) > 0 || b >= 0x80 {
		return d.utf8Byte(b)
	}
	switch b {
	case '\r':
		d.skipLF = true
		return keyEnter, 0
	case '\n':
		if skipLF {
			return keyNone, 0
		}
		return keyEnter, 0
	case 0x1b:
		d.state = stEsc
		return keyNone, 0
	case 0x7f, 0x08:
		return keyBackspace, 0
	case 0x01:
		return keyHome, 0
	case 0x02:
		return keyLeft, 0
	case 0x03:
		return keyInterrupt, 0
	case 0x04:
		return keyEOF, 0
	case 0x05:
		return keyEnd, 0
	case 0x06:
		return keyRight, 0
	case '\t':
		return keyTab, 0
	case 0x0b:
		return keyKillEnd, 0
	case 0x0c:
		return keyRedraw, 0
	case 0x0e:
		return keyDown, 0
	case 0x10:
		return keyUp, 0
	case 0x15:
		return keyKillStart, 0
	case 0x17:
		return keyKillWord, 0
	}
	if b < 0x20 {
		return keyNone, 0 // other control characters do nothing
	}
	return keyRune, rune(b)
}

// utf8Byte collects the bytes of a multi-byte character. An invalid
// sequence is dropped; a byte that cannot continue it starts over.
func (d *decoder) utf8Byte(b byte) (key, rune) {
	if len(d.utf) > 0 && (b < 0x80 || b >= 0xc0) {
		// Not a continuation byte: the pending character is broken.
		d.utf = d.utf[:0]
		return d.ground(b, false)
	}
	d.utf = append(d.utf, b)
	if !utf8.FullRune(d.utf) {
		if len(d.utf) >= utf8.UTFMax {
			d.utf = d.utf[:0]
		}
		return keyNone, 0
	}
	r, _ := utf8.DecodeRune(d.utf)
	d.utf = d.utf[:0]
	if r == utf8.RuneError {
		return keyNone, 0
	}
	return keyRune, r
}

// afterEsc decodes the byte after ESC.
func (d *decoder) afterEsc(b byte) (key, rune) {
	d.state = stGround
	switch b {
	case '[':
		d.state = stCSI
		d.params = d.params[:0]
		return keyNone, 0
	case 'O':
		d.state = stSS3
		return keyNone, 0
	case 'b', 'B':
		return keyWordLeft, 0
	case 'f', 'F':
		return keyWordRight, 0
	case 0x7f, 0x08:
		return keyKillWord, 0
	case 0x1b:
		d.state = stEsc // ESC ESC: the first one was a lone Escape key
		return keyNone, 0
	}
	if isControl(b) {
		return d.ground(b, false)
	}
	return keyNone, 0 // Alt-<key> that means nothing here
}

// inCSI decodes a byte of a CSI sequence (ESC [ params final).
func (d *decoder) inCSI(b byte) (key, rune) {
	switch {
	case b >= 0x20 && b <= 0x3f: // parameter and intermediate bytes
		if len(d.params) >= maxSequence {
			d.state = stGround // runaway sequence: give up on it
			return keyNone, 0
		}
		d.params = append(d.params, b)
		return keyNone, 0
	case b >= 0x40 && b <= 0x7e: // final byte
		d.state = stGround
		return csiKey(string(d.params), b), 0
	}
	// A control character or a byte that no sequence contains: the
	// sequence was cut short; the byte means what it means alone.
	d.state = stGround
	return d.ground(b, false)
}

// csiKey maps a complete CSI sequence to a key.
func csiKey(params string, final byte) key {
	mod := ""
	if i := strings.IndexByte(params, ';'); i >= 0 {
		mod = params[i+1:]
		params = params[:i]
	}
	ctrl := mod == "5" || mod == "3" // Ctrl or Alt with an arrow: a word
	switch final {
	case 'A':
		return keyUp
	case 'B':
		return keyDown
	case 'C':
		if ctrl {
			return keyWordRight
		}
		return keyRight
	case 'D':
		if ctrl {
			return keyWordLeft
		}
		return keyLeft
	case 'H':
		return keyHome
	case 'F':
		return keyEnd
	case '~':
		switch params {
		case "1", "7":
			return keyHome
		case "4", "8":
			return keyEnd
		case "3":
			return keyDelete
		}
	}
	return keyNone
}

// ss3Key maps ESC O x (application cursor keys) to a key.
func ss3Key(b byte) key {
	switch b {
	case 'A':
		return keyUp
	case 'B':
		return keyDown
	case 'C':
		return keyRight
	case 'D':
		return keyLeft
	case 'H':
		return keyHome
	case 'F':
		return keyEnd
	}
	return keyNone
}

func isControl(b byte) bool { return b < 0x20 || b == 0x7f }
