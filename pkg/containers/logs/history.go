package logs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// All, as Query.Tail, asks for every line.
const All = -1

// Query selects lines of a container's log for Ring.Stream.
type Query struct {
	// Tail is how many of the last lines are wanted; All for every line
	// (0 for none: only new lines, with Follow).
	Tail int
	// Since keeps the lines from the first one received at or after
	// Since; the zero time keeps every line.
	Since time.Time
	// Follow goes on with the lines written later, until the context ends
	// or the ring closes.
	Follow bool
}

// streamBatch is the most lines Stream hands to its callback at once.
const streamBatch = 1024

// Stream calls fn with the lines q selects, oldest first, in batches:
// first the lines that only the log files still hold (NAME.log.N ...
// NAME.log, read by name from RingOptions.Dir), then the ring's, then, if
// q.Follow, new lines as they come. missed counts the lines dropped for
// this (slow) reader just before a batch; it is 0 for the stored lines.
// No line is missing or given twice where the files meet the ring or the
// ring meets the new lines, even while the files rotate.
//
// The files are joined to the ring by the file position of the ring's
// oldest line. When that is unknown (the line was not written to a file)
// or that file is gone, Stream gives the ring's lines only. Memory stays
// bounded: the files are read in blocks, never whole.
//
// Stream returns nil once every stored line was given (without Follow),
// fn's error, ctx's error, or ErrClosed when the ring closes while
// following.
func (r *Ring) Stream(ctx context.Context, q Query, fn func(lines []Entry, missed uint64) error) error {
	var (
		hist     *history
		end      position // the files' part ends before this record
		boundary []byte   // the record at end, to check that the files match
		skip     bool     // follower lines in hist before its sizes were given from the files
		f        *Follower
	)
	r.mu.Lock()
	ringPart := r.tailLocked(q.Tail, q.Since)
	needFiles := r.opts.Dir != "" && q.Tail != 0 && (q.Tail < 0 || len(ringPart) < q.Tail) && len(ringPart) == r.n
	if needFiles && r.n > 0 {
		oldest := r.at(0)
		end = oldest.pos
		needFiles = end.ok() && (q.Since.IsZero() || !oldest.Time.Before(q.Since))
		boundary = AppendRecord(nil, oldest.Line)
	} else if needFiles {
		// Nothing in the ring: the files' snapshot is taken now, so
		// that the follower can tell which of its lines it holds.
		var err error
		hist, err = openHistory(r.opts.Dir, r.name)
		if err != nil {
			r.mu.Unlock()
			return err
		}
		defer hist.Close()
		skip = true
	}
	if q.Follow {
		f = r.followLocked(ctx)
		defer f.Stop()
	}
	r.mu.Unlock()

	if needFiles {
		if hist == nil {
			var err error
			if hist, err = openHistory(r.opts.Dir, r.name); err != nil {
				return err
			}
			defer hist.Close()
		}
		need := All
		if q.Tail >= 0 {
			need = q.Tail - len(ringPart)
		}
		if err := hist.stream(ctx, end, boundary, need, q.Since, fn); err != nil {
			return err
		}
	}
	for i := 0; i < len(ringPart); i += streamBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(ringPart[i:min(i+streamBatch, len(ringPart))], 0); err != nil {
			return err
		}
	}
	if f == nil {
		return nil
	}
	for {
		lines, missed, err := f.Next()
		if err != nil {
			return err
		}
		if skip {
			// Lines that were in the files' snapshot were given
			// from the files (they reached the file before the
			// ring).
			kept := lines[:0]
			for _, l := range lines {
				if !hist.holds(l.pos) {
					kept = append(kept, l)
				}
			}
			lines = kept
		}
		if len(lines) == 0 && missed == 0 {
			continue
		}
		if err := fn(lines, missed); err != nil {
			return err
		}
	}
}

// TailFiles reads the last n records (every record for n < 0) of the log
// files of the container called name in dir, NAME.log.N ... NAME.log,
// oldest first. It reads the files by name while they may be rotating.
func TailFiles(dir, name string, n int) ([]Entry, error) {
	h, err := openHistory(dir, name)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var out []Entry
	err = h.stream(context.Background(), position{}, nil, n, time.Time{}, func(lines []Entry, _ uint64) error {
		out = append(out, lines...)
		return nil
	})
	return out, err
}

// histFile is one log file as opened.
type histFile struct {
	f    *os.File
	ino  uint64
	size int64 // at opening; a file that grows later is read up to here
}

// history is a consistent set of a container's log files, oldest first.
type history struct {
	path  string
	files []histFile
}

// openAttempts bounds the retries of openHistory while a rotation is under
// way; a rotation is a few renames, so this is plenty.
const openAttempts = 50

// openHistory opens NAME.log and its rotated files, newest first, and
// checks that no rotation moved them meanwhile (every name still names
// the file opened under it, no file twice, no later name present after a
// missing one); otherwise it tries again. Files left inconsistent for good
// (a rotation that failed half-way) give, after the last attempt, the
// newest files up to the first missing name.
func openHistory(dir, name string) (*history, error) {
	path := filepath.Join(dir, name+".log")
	for attempt := 1; ; attempt++ {
		h, ok, err := tryOpenHistory(path)
		if err != nil {
			return nil, err
		}
		if ok || attempt == openAttempts {
			return h, nil
		}
		h.Close()
		time.Sleep(time.Millisecond)
	}
}

func tryOpenHistory(path string) (*history, bool, error) {
	h := &history{path: path}
	var newestFirst []histFile
	seen := map[uint64]bool{}
	consistent := true
	for k := 0; ; k++ {
		f, err := os.Open(rotatedName(path, k))
		if errors.Is(err, fs.ErrNotExist) {
			// A later name with this one missing: a rotation is
			// shifting the files.
			if _, err := os.Lstat(rotatedName(path, k+1)); err == nil {
				consistent = false
			}
			break
		}
		if err != nil {
			h.closeAll(newestFirst)
			return nil, false, fmt.Errorf("logs: open %s: %w", rotatedName(path, k), err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			h.closeAll(newestFirst)
			return nil, false, fmt.Errorf("logs: stat %s: %w", rotatedName(path, k), err)
		}
		if seen[st.Ino] {
			consistent = false
			f.Close()
			break
		}
		seen[st.Ino] = true
		newestFirst = append(newestFirst, histFile{f: f, ino: st.Ino, size: st.Size})
	}
	for k, hf := range newestFirst {
		var st unix.Stat_t
		if err := unix.Stat(rotatedName(path, k), &st); err != nil || st.Ino != hf.ino {
			consistent = false
		}
	}
	for i := len(newestFirst) - 1; i >= 0; i-- {
		h.files = append(h.files, newestFirst[i])
	}
	return h, consistent, nil
}

func (h *history) closeAll(files []histFile) {
	for _, hf := range files {
		hf.f.Close()
	}
}

// Close closes the files.
func (h *history) Close() { h.closeAll(h.files) }

// holds reports whether p lies in the files as opened (inside one of them,
// before its size then).
func (h *history) holds(p position) bool {
	for _, hf := range h.files {
		if p.ino == hf.ino {
			return p.off < hf.size
		}
	}
	return false
}

// stream gives fn the records before end (the end of the files when end
// is the zero position), the last need of them (all for need < 0), from
// the first one at or after since. boundary, if set, is the record
// expected at end; if it is not there (the file is gone, or its inode was
// reused) nothing is given, since the ring holds everything the files
// still have.
func (h *history) stream(ctx context.Context, end position, boundary []byte, need int, since time.Time, fn func([]Entry, uint64) error) error {
	if len(h.files) == 0 {
		return nil
	}
	endFile, endOff := len(h.files)-1, int64(0)
	if end.ok() {
		endFile = -1
		for i, hf := range h.files {
			if hf.ino == end.ino {
				endFile = i
			}
		}
		if endFile < 0 {
			return nil
		}
		endOff = end.off
		ok, err := h.recordAt(endFile, endOff, boundary)
		if err != nil || !ok {
			return err
		}
	} else {
		var err error
		if endOff, err = h.lastRecordEnd(endFile); err != nil {
			return err
		}
		// The newest file was cut where its last whole record ends.
		h.files[endFile].size = endOff
	}
	start := pos{}
	if need >= 0 {
		var err error
		if start, err = h.tailStart(endFile, endOff, need); err != nil {
			return err
		}
	}
	if !since.IsZero() {
		s, err := h.sinceStart(endFile, endOff, since)
		if err != nil {
			return err
		}
		if start.less(s) {
			start = s
		}
	}
	return h.each(ctx, start, pos{endFile, endOff}, nil, fn)
}

// pos is a position in a history: a file's index and an offset in it.
type pos struct {
	file int
	off  int64
}

func (p pos) less(q pos) bool { return p.file < q.file || (p.file == q.file && p.off < q.off) }

// recordAt reports whether the record at off in file i is want.
func (h *history) recordAt(i int, off int64, want []byte) (bool, error) {
	if off+int64(len(want)) > h.files[i].size && i == len(h.files)-1 {
		// The newest file grew since it was opened: look again.
		var st unix.Stat_t
		if err := unix.Fstat(int(h.files[i].f.Fd()), &st); err != nil {
			return false, fmt.Errorf("logs: stat %s: %w", h.files[i].f.Name(), err)
		}
		h.files[i].size = st.Size
	}
	got := make([]byte, len(want))
	if _, err := h.files[i].f.ReadAt(got, off); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, fmt.Errorf("logs: read %s: %w", h.files[i].f.Name(), err)
	}
	return bytes.Equal(got, want), nil
}

// blockSize is the unit in which files are read backwards.
const blockSize = 64 << 10

// lastRecordEnd returns the offset just after the last newline of file i
// (a record being written at the end is left out).
func (h *history) lastRecordEnd(i int) (int64, error) {
	hf := h.files[i]
	buf := make([]byte, blockSize)
	for end := hf.size; end > 0; {
		n := min(int64(len(buf)), end)
		if _, err := hf.f.ReadAt(buf[:n], end-n); err != nil {
			return 0, fmt.Errorf("logs: read %s: %w", hf.f.Name(), err)
		}
		if j := bytes.LastIndexByte(buf[:n], '\n'); j >= 0 {
			return end - n + int64(j) + 1, nil
		}
		end -= n
	}
	return 0, nil
}

// tailStart returns where the last n records before (endFile, endOff)
// begin (records end with a newline).
func (h *history) tailStart(endFile int, endOff int64, n int) (pos, error) {
	buf := make([]byte, blockSize)
	for i := endFile; i >= 0; i-- {
		end := h.files[i].size
		if i == endFile {
			end = endOff
		}
		// The newline ending the last record starts no record; each
		// newline before it starts one.
		newlines := 0
		for at := end; at > 0; {
			m := min(int64(len(buf)), at)
			at -= m
			if _, err := h.files[i].f.ReadAt(buf[:m], at); err != nil {
				return pos{}, fmt.Errorf("logs: read %s: %w", h.files[i].f.Name(), err)
			}
			for j := m - 1; j >= 0; j-- {
				if buf[j] != '\n' {
					continue
				}
				if newlines == n {
					return pos{i, at + j + 1}, nil
				}
				newlines++
			}
		}
		if newlines >= n {
			return pos{i, 0}, nil
		}
		n -= newlines
	}
	return pos{}, nil
}

// sinceStart returns where the first record at or after t begins, before
// (endFile, endOff), reading the lines as in time order: from the newest
// file whose first record is before t.
func (h *history) sinceStart(endFile int, endOff int64, t time.Time) (pos, error) {
	from := 0
	for i := endFile; i >= 0; i-- {
		first, err := h.firstTime(i)
		if err != nil {
			return pos{}, err
		}
		if !first.IsZero() && first.Before(t) {
			from = i
			break
		}
	}
	start := pos{endFile, endOff}
	found := errors.New("found")
	err := h.each(context.Background(), pos{from, 0}, pos{endFile, endOff}, func(e *Entry, at pos) error {
		if !e.Time.Before(t) {
			start = at
			return found
		}
		return nil
	}, nil)
	if err != nil && err != found {
		return pos{}, err
	}
	return start, nil
}

// firstTime returns the time of file i's first record, or the zero time.
func (h *history) firstTime(i int) (time.Time, error) {
	var t time.Time
	found := errors.New("found")
	err := h.each(context.Background(), pos{i, 0}, pos{i, h.files[i].size}, func(e *Entry, _ pos) error {
		t = e.Time
		return found
	}, nil)
	if err != nil && err != found {
		return time.Time{}, err
	}
	return t, nil
}

// maxRecord bounds a record read from a file; a longer one (not written by
// a Sink) is given cut.
const maxRecord = 1 << 20

// each reads the records in [from, to). visit, if set, sees each record
// and its position (its Text only valid during the call); fn, if set, gets
// them in batches of owned copies. A record that does not parse is
// skipped.
func (h *history) each(ctx context.Context, from, to pos, visit func(*Entry, pos) error, fn func([]Entry, uint64) error) error {
	var batch []Entry
	var slab []byte
	partial := [2]bool{}
	flush := func() error {
		if len(batch) == 0 || fn == nil {
			return nil
		}
		err := fn(batch, 0)
		batch, slab = nil, nil
		return err
	}
	for i := from.file; i <= to.file && i < len(h.files); i++ {
		hf := h.files[i]
		start, end := int64(0), hf.size
		if i == from.file {
			start = from.off
		}
		if i == to.file {
			end = to.off
		}
		if start >= end {
			continue
		}
		br := bufio.NewReaderSize(io.NewSectionReader(hf.f, start, end-start), 64<<10)
		off, recStart := start, start
		var long []byte // a record longer than the reader's buffer
		for {
			rec, err := br.ReadSlice('\n')
			off += int64(len(rec))
			if errors.Is(err, bufio.ErrBufferFull) {
				if len(long) < maxRecord {
					long = append(long, rec...)
				}
				continue
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("logs: read %s: %w", hf.f.Name(), err)
			}
			if len(rec) == 0 && long == nil {
				break
			}
			if long != nil {
				rec, long = append(long, rec...), nil
			}
			at := recStart
			recStart = off
			l, perr := ParseRecord(bytes.TrimSuffix(rec, []byte{'\n'}))
			if perr == nil {
				si := streamIndex(l.Stream)
				l.Continued, partial[si] = partial[si], l.Partial
				e := Entry{Line: l}
				if visit != nil {
					if verr := visit(&e, pos{i, at}); verr != nil {
						return verr
					}
				}
				if fn != nil {
					if cap(slab)-len(slab) < len(l.Text) {
						slab = make([]byte, 0, max(slabSize, len(l.Text)))
					}
					n := len(slab)
					slab = append(slab, l.Text...)
					e.Text = slab[n:len(slab):len(slab)]
					batch = append(batch, e)
					if len(batch) == streamBatch {
						if cerr := ctx.Err(); cerr != nil {
							return cerr
						}
						if ferr := flush(); ferr != nil {
							return ferr
						}
					}
				}
			}
			if err != nil {
				break
			}
		}
	}
	return flush()
}
