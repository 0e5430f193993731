package logs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of Rotation.
const (
	// DefaultMaxSize is the size at which a log file is rotated.
	DefaultMaxSize = 10 << 20
	// DefaultMaxFiles is the number of rotated files kept.
	DefaultMaxFiles = 3
	// MinMaxSize is the smallest MaxSize accepted; smaller values are
	// raised to it.
	MinMaxSize = 4 << 10
)

// Rotation limits a container's log file. The file NAME.log is rotated
// before a record would make it larger than MaxSize: NAME.log.(MaxFiles-1)
// replaces NAME.log.MaxFiles (which is lost), ..., NAME.log.1 becomes
// NAME.log.2, NAME.log becomes NAME.log.1, and a new NAME.log is created.
// So the files hold at most (MaxFiles+1) × MaxSize bytes (a record longer
// than MaxSize gets a file of its own).
type Rotation struct {
	// MaxSize is the size in bytes at which the file is rotated; 0 means
	// DefaultMaxSize, a negative value never rotates.
	MaxSize int64
	// MaxFiles is the number of rotated files kept; 0 means
	// DefaultMaxFiles.
	MaxFiles int
}

// Override returns r with the fields that o sets (nonzero): a container's
// own limits over the machine's defaults.
func (r Rotation) Override(o Rotation) Rotation {
	if o.MaxSize != 0 {
		r.MaxSize = o.MaxSize
	}
	if o.MaxFiles != 0 {
		r.MaxFiles = o.MaxFiles
	}
	return r
}

// withDefaults fills in zero fields.
func (r Rotation) withDefaults() Rotation {
	if r.MaxSize == 0 {
		r.MaxSize = DefaultMaxSize
	}
	if r.MaxSize > 0 && r.MaxSize < MinMaxSize {
		r.MaxSize = MinMaxSize
	}
	if r.MaxFiles <= 0 {
		r.MaxFiles = DefaultMaxFiles
	}
	return r
}

// position is where a record was written: the file (by inode) and the
// byte offset of the record in it. The zero position means "not written".
type position struct {
	ino uint64
	off int64
}

func (p position) ok() bool { return p.ino != 0 }

// rotatedName is the path of the k-th rotated file (k = 0 is the file
// itself).
func rotatedName(path string, k int) string {
	if k == 0 {
		return path
	}
	return path + "." + strconv.Itoa(k)
}

// fileDest appends records to the container's log file and rotates it.
type fileDest struct {
	path string
	rot  Rotation

	f      *os.File
	ino    uint64
	size   int64
	broken bool // f was renamed away but no new file opened: reopen first

	buf  []byte
	offs []int // start of each pending record in buf

	// The last time formatted: a batch's lines share one.
	tsTime time.Time
	ts     []byte
}

// openFile opens dir/name.log for appending, creating dir and the file,
// and removes rotated files beyond rot.MaxFiles (left by an earlier
// configuration).
func openFile(dir, name string, rot Rotation) (*fileDest, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("logs: create %s: %w", dir, err)
	}
	d := &fileDest{path: filepath.Join(dir, name+".log"), rot: rot.withDefaults()}
	if err := d.open(); err != nil {
		return nil, err
	}
	for k := d.rot.MaxFiles + 1; ; k++ {
		if err := os.Remove(rotatedName(d.path, k)); err != nil {
			break
		}
	}
	return d, nil
}

// open opens (creates) the file at d.path and learns its size and inode.
func (d *fileDest) open() error {
	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, FileMode)
	if err != nil {
		return fmt.Errorf("logs: open %s: %w", d.path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return fmt.Errorf("logs: stat %s: %w", d.path, err)
	}
	d.f, d.ino, d.size, d.broken = f, st.Ino, st.Size, false
	return nil
}

// Write appends the lines' records, rotating between records when the
// next one would pass MaxSize, and records each line's position.
func (d *fileDest) Write(lines []Line) error {
	var errs []error
	if d.broken {
		// Until a new file opens, lines go on into the renamed one.
		if err := d.reopen(); err != nil {
			errs = append(errs, err)
		}
	}
	d.buf, d.offs = d.buf[:0], d.offs[:0]
	first := 0            // the first line of the pending records
	rotateFailed := false // try once per batch
	for i := range lines {
		start := len(d.buf)
		if t := lines[i].Time; d.ts == nil || !t.Equal(d.tsTime) || t.Location() != d.tsTime.Location() {
			d.tsTime, d.ts = t, appendTime(d.ts[:0], t)
		}
		d.buf = appendRecordAt(d.buf, d.ts, lines[i])
		if d.rot.MaxSize > 0 && !d.broken && !rotateFailed && d.size+int64(len(d.buf)) > d.rot.MaxSize && d.size+int64(start) > 0 {
			// Write what fits, rotate, and start the new file with
			// this record.
			rec := len(d.buf) - start
			if err := d.flush(lines[first:i], d.buf[:start]); err != nil {
				errs = append(errs, err)
			}
			if err := d.rotate(); err != nil {
				errs = append(errs, err)
				rotateFailed = true
			}
			copy(d.buf, d.buf[start:])
			d.buf, d.offs, first, start = d.buf[:rec], d.offs[:0], i, 0
		}
		d.offs = append(d.offs, start)
	}
	if err := d.flush(lines[first:], d.buf); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// flush writes the pending records of lines (in buf, starting at d.offs)
// and sets the lines' positions.
func (d *fileDest) flush(lines []Line, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	n, err := d.f.Write(buf)
	for i := range lines {
		if d.offs[i] < n {
			lines[i].pos = position{ino: d.ino, off: d.size + int64(d.offs[i])}
		}
	}
	d.size += int64(n)
	if err != nil {
		return fmt.Errorf("write %s: %w", d.path, err)
	}
	return nil
}

// rotate shifts the rotated files by one, renames the file to NAME.log.1
// and opens a new one. The oldest rename happens first, so a reader that
// sees NAME.log.k missing while NAME.log.(k+1) exists knows a rotation is
// under way.
func (d *fileDest) rotate() error {
	for k := d.rot.MaxFiles; k > 1; k-- {
		err := os.Rename(rotatedName(d.path, k-1), rotatedName(d.path, k))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("logs: rotate %s: %w", d.path, err)
		}
	}
	if err := os.Rename(d.path, rotatedName(d.path, 1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Nothing is lost: the lines go on into the same file.
		return fmt.Errorf("logs: rotate %s: %w", d.path, err)
	}
	d.broken = true
	return d.reopen()
}

// reopen replaces the open file with a newly opened d.path. On failure the
// old file stays in use, so no line is lost while it exists.
func (d *fileDest) reopen() error {
	old := d.f
	if err := d.open(); err != nil {
		return err
	}
	old.Close()
	return nil
}

func (d *fileDest) Close() error {
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("logs: close %s: %w", d.path, err)
	}
	return nil
}
