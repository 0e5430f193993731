package shell

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode"
)

// ErrInterrupt is returned by ReadLine when Ctrl-C abandons the line.
var ErrInterrupt = errors.New("interrupted")

// DefaultHistory is how many lines an Editor remembers.
const DefaultHistory = 200

// listWidth is the width that Tab's list of candidates is wrapped to: the
// editor never asks the terminal its size (a serial line may not answer).
const listWidth = 80

// CompleteFunc returns the candidates for the word that ends at pos in
// line, and where that word starts.
type CompleteFunc func(line []rune, pos int) (start int, candidates []string)

// Editor reads lines from a terminal in raw mode and lets the user edit
// them: Backspace/DEL, Delete, Ctrl-U, Ctrl-K, Ctrl-W, Ctrl-A/Home,
// Ctrl-E/End, the arrow keys and Ctrl-B/Ctrl-F, Alt-B/Alt-F and
// Ctrl-arrows by words, Up/Down and Ctrl-P/Ctrl-N through the history,
// Ctrl-L to redraw, Ctrl-C to abandon the line, Ctrl-D on an empty line for
// end of input, and Tab to complete.
//
// It never queries the terminal: it assumes one column per character and
// does its redrawing on the current row ("\r", the prompt, the line,
// erase to the end of the row), so a line longer than the terminal is wide
// is edited correctly but redrawn untidily. Input may arrive one byte at a
// time; escape sequences and UTF-8 characters split between reads decode
// all the same, and a CR LF pair ends one line, not two.
//
// The editor owns the terminal's output: whatever else writes to the same
// terminal (command output, the console's messages) goes through Writer or
// Around, so that the line being edited is hidden and redrawn around it.
type Editor struct {
	in       io.Reader
	out      io.Writer
	complete CompleteFunc
	maxHist  int

	// inMu guards pending, the bytes read but not yet decoded.
	inMu    sync.Mutex
	pending []byte
	readBuf []byte

	dec decoder // used only by ReadLine's goroutine

	// mu guards the output and the line being edited.
	mu          sync.Mutex
	active      bool // a line is being edited and shown
	prompt      string
	buf         []rune
	pos         int
	atLineStart bool // the last byte written to the terminal was '\n'

	// newline ends a row: "\r\n", or "\n" on a tty that turns it into
	// CR LF itself (ONLCR), as the shell's raw mode keeps it.
	newline string
	// promptFunc, when set, gives the prompt anew for a redraw (the host
	// name may change while the prompt is shown).
	promptFunc func() string

	history []string // guarded by ReadLine's single caller
	histIdx int
	draft   []rune
}

// NewEditor returns an editor reading keys from in and writing to out.
// complete may be nil (Tab does nothing).
func NewEditor(in io.Reader, out io.Writer, complete CompleteFunc) *Editor {
	return &Editor{in: in, out: out, complete: complete, maxHist: DefaultHistory, atLineStart: true, readBuf: make([]byte, 256), newline: "\r\n"}
}

// History returns the lines entered so far, oldest first.
func (e *Editor) History() []string { return append([]string(nil), e.history...) }

// Feed adds bytes to the input after those not decoded yet: type-ahead
// that was read while a command ran, for the next ReadLine.
func (e *Editor) Feed(p []byte) {
	e.inMu.Lock()
	defer e.inMu.Unlock()
	e.pending = append(e.pending, p...)
}

// takeInput returns the type-ahead not decoded yet and drops it: for a
// program that reads the terminal next.
func (e *Editor) takeInput() []byte {
	e.inMu.Lock()
	defer e.inMu.Unlock()
	p := e.pending
	e.pending = nil
	return p
}

// takeInterrupt reports whether the type-ahead holds a Ctrl-C, and then
// drops it all: a Ctrl-C typed right behind a command (a serial line may
// deliver both in one read) interrupts that command.
func (e *Editor) takeInterrupt() bool {
	e.inMu.Lock()
	defer e.inMu.Unlock()
	if bytes.IndexByte(e.pending, 0x03) < 0 {
		return false
	}
	e.pending = nil
	return true
}

// DiscardInput drops type-ahead not decoded yet (after Ctrl-C).
func (e *Editor) DiscardInput() {
	e.inMu.Lock()
	defer e.inMu.Unlock()
	e.pending = nil
}

// readByte returns the next input byte, reading the terminal when nothing
// is pending.
func (e *Editor) readByte() (byte, error) {
	e.inMu.Lock()
	if len(e.pending) > 0 {
		b := e.pending[0]
		e.pending = e.pending[1:]
		e.inMu.Unlock()
		return b, nil
	}
	e.inMu.Unlock()
	for {
		n, err := e.in.Read(e.readBuf)
		if n > 0 {
			e.inMu.Lock()
			e.pending = append(e.pending, e.readBuf[1:n]...)
			e.inMu.Unlock()
			return e.readBuf[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// ReadLine shows prompt and returns the line the user entered, without its
// line ending. It returns ErrInterrupt on Ctrl-C, io.EOF on Ctrl-D at an
// empty line, and the terminal's error if reading fails.
func (e *Editor) ReadLine(prompt string) (string, error) {
	e.mu.Lock()
	e.prompt, e.buf, e.pos, e.active = prompt, nil, 0, true
	if !e.atLineStart {
		e.write(e.newline) // the last output did not end its line
	}
	e.write(prompt)
	e.mu.Unlock()
	e.histIdx, e.draft = len(e.history), nil
	for {
		b, err := e.readByte()
		if err != nil {
			e.mu.Lock()
			e.active = false
			e.mu.Unlock()
			return "", err
		}
		k, r := e.dec.feed(b)
		if k == keyNone {
			continue
		}
		line, done, err := e.handle(k, r)
		if done {
			return line, err
		}
	}
}

// handle applies one key; done reports that ReadLine returns.
func (e *Editor) handle(k key, r rune) (line string, done bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch k {
	case keyRune:
		e.insert([]rune{r})
	case keyEnter:
		line = string(e.buf)
		e.write(e.newline)
		e.active = false
		e.remember(line)
		return line, true, nil
	case keyInterrupt:
		e.write("^C" + e.newline)
		e.active = false
		return "", true, ErrInterrupt
	case keyEOF:
		if len(e.buf) == 0 {
			e.write(e.newline)
			e.active = false
			return "", true, io.EOF
		}
		e.deleteAt(e.pos)
	case keyBackspace:
		if e.pos == 0 {
			break
		}
		if e.pos == len(e.buf) {
			e.buf = e.buf[:e.pos-1]
			e.pos--
			e.write("\b \b")
			break
		}
		e.deleteAt(e.pos - 1)
		e.pos--
		e.refresh()
	case keyDelete:
		if e.pos < len(e.buf) {
			e.deleteAt(e.pos)
			e.refresh()
		}
	case keyLeft:
		if e.pos > 0 {
			e.pos--
			e.write("\b")
		}
	case keyRight:
		if e.pos < len(e.buf) {
			e.write(string(e.buf[e.pos])) // writing the character moves past it
			e.pos++
		}
	case keyHome:
		e.moveTo(0)
	case keyEnd:
		e.moveTo(len(e.buf))
	case keyWordLeft:
		e.moveTo(e.wordStart())
	case keyWordRight:
		e.moveTo(e.wordEnd())
	case keyKillStart:
		e.buf = append([]rune(nil), e.buf[e.pos:]...)
		e.pos = 0
		e.refresh()
	case keyKillEnd:
		e.buf = e.buf[:e.pos]
		e.refresh()
	case keyKillWord:
		start := e.wordStart()
		e.buf = append(e.buf[:start], e.buf[e.pos:]...)
		e.pos = start
		e.refresh()
	case keyRedraw:
		e.updatePrompt()
		e.refresh()
	case keyUp:
		e.recall(-1)
	case keyDown:
		e.recall(+1)
	case keyTab:
		e.completeWord()
	}
	return "", false, nil
}

// insert puts rs at the cursor. Lock held.
func (e *Editor) insert(rs []rune) {
	tail := append([]rune(nil), e.buf[e.pos:]...)
	e.buf = append(append(e.buf[:e.pos], rs...), tail...)
	e.pos += len(rs)
	if len(tail) == 0 {
		e.write(string(rs))
		return
	}
	e.refresh()
}

// deleteAt removes the character at i. Lock held.
func (e *Editor) deleteAt(i int) {
	e.buf = append(e.buf[:i], e.buf[i+1:]...)
}

// moveTo puts the cursor at i. Lock held.
func (e *Editor) moveTo(i int) {
	if i == e.pos {
		return
	}
	e.pos = i
	e.refresh()
}

// wordStart is where the word before the cursor starts (Ctrl-W, Alt-B).
func (e *Editor) wordStart() int {
	i := e.pos
	for i > 0 && unicode.IsSpace(e.buf[i-1]) {
		i--
	}
	for i > 0 && !unicode.IsSpace(e.buf[i-1]) {
		i--
	}
	return i
}

// wordEnd is where the word after the cursor ends (Alt-F).
func (e *Editor) wordEnd() int {
	i := e.pos
	for i < len(e.buf) && unicode.IsSpace(e.buf[i]) {
		i++
	}
	for i < len(e.buf) && !unicode.IsSpace(e.buf[i]) {
		i++
	}
	return i
}

// remember adds a line to the history, skipping blanks and repeats.
func (e *Editor) remember(line string) {
	if strings.TrimSpace(line) == "" || (len(e.history) > 0 && e.history[len(e.history)-1] == line) {
		return
	}
	e.history = append(e.history, line)
	if len(e.history) > e.maxHist {
		e.history = e.history[len(e.history)-e.maxHist:]
	}
}

// recall moves through the history by dir (-1 older, +1 newer); past the
// newest entry is the line that was being typed. Lock held.
func (e *Editor) recall(dir int) {
	i := e.histIdx + dir
	if i < 0 || i > len(e.history) {
		return
	}
	if e.histIdx == len(e.history) {
		e.draft = append([]rune(nil), e.buf...)
	}
	e.histIdx = i
	if i == len(e.history) {
		e.buf = append([]rune(nil), e.draft...)
	} else {
		e.buf = []rune(e.history[i])
	}
	e.pos = len(e.buf)
	e.refresh()
}

// completeWord completes the word before the cursor: the candidates'
// common prefix is inserted; when that adds nothing and there are several,
// they are listed under the line. Lock held.
func (e *Editor) completeWord() {
	if e.complete == nil {
		return
	}
	start, cands := e.complete(append([]rune(nil), e.buf...), e.pos)
	if len(cands) == 0 || start < 0 || start > e.pos {
		return
	}
	word := string(e.buf[start:e.pos])
	prefix := commonPrefix(cands)
	if len(cands) == 1 && !strings.HasSuffix(prefix, "/") {
		prefix += " "
	}
	if strings.HasPrefix(prefix, word) && len(prefix) > len(word) {
		e.insert([]rune(prefix[len(word):]))
		return
	}
	if len(cands) < 2 {
		return
	}
	var b strings.Builder
	b.WriteString(e.newline)
	col := 0
	for _, c := range cands {
		if col > 0 && col+2+len(c) > listWidth {
			b.WriteString(e.newline)
			col = 0
		}
		if col > 0 {
			b.WriteString("  ")
			col += 2
		}
		b.WriteString(c)
		col += len(c)
	}
	b.WriteString(e.newline)
	e.write(b.String())
	e.refresh()
}

// commonPrefix returns the longest common prefix of ss.
func commonPrefix(ss []string) string {
	p := ss[0]
	for _, s := range ss[1:] {
		for !strings.HasPrefix(s, p) {
			p = p[:len(p)-1]
		}
	}
	return p
}

// refresh redraws the prompt and the line on the current row and puts the
// cursor back where it is in the line. Lock held.
func (e *Editor) refresh() {
	e.write(e.lineImage())
}

// lineImage is what redraws the line from the start of the row.
func (e *Editor) lineImage() string {
	s := "\r" + e.prompt + string(e.buf) + "\x1b[K"
	if back := len(e.buf) - e.pos; back > 0 {
		s += fmt.Sprintf("\x1b[%dD", back)
	}
	return s
}

// write sends s to the terminal. Lock held.
func (e *Editor) write(s string) {
	if s == "" {
		return
	}
	_, _ = io.WriteString(e.out, s) // a terminal that fails cannot be told
	e.atLineStart = s[len(s)-1] == '\n'
}

// Redraw shows the line being edited again on the current row, after
// something else (the kernel) wrote over it. It does nothing when no line
// is being edited.
func (e *Editor) Redraw() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.active {
		e.updatePrompt()
		e.refresh()
	}
}

// updatePrompt takes the prompt anew from promptFunc. Lock held.
func (e *Editor) updatePrompt() {
	if e.promptFunc != nil {
		e.prompt = e.promptFunc()
	}
}

// Around runs write, which writes whole lines to the same terminal by
// another way (the console's own file), with the line being edited
// erased before and redrawn after, and with the editor's own output held
// back meanwhile. Without a line being edited write just runs.
func (e *Editor) Around(write func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.active {
		e.write("\r\x1b[K")
	}
	write()
	e.atLineStart = true
	if e.active {
		e.updatePrompt()
		e.refresh()
	}
}

// Writer returns a writer for command output to the terminal, serialized
// with the editor's own output and the console's messages.
func (e *Editor) Writer() io.Writer { return editorWriter{e} }

type editorWriter struct{ e *Editor }

// Write writes p to the terminal.
func (w editorWriter) Write(p []byte) (int, error) {
	w.e.mu.Lock()
	defer w.e.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	n, err := w.e.out.Write(p)
	w.e.atLineStart = p[len(p)-1] == '\n'
	return n, err
}
