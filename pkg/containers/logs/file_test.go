package logs

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// seqLine is the text of numbered line i, padded to width bytes.
func seqLine(i, width int) string {
	s := fmt.Sprintf("line %09d ", i)
	if len(s) < width {
		s += strings.Repeat("x", width-len(s))
	}
	return s
}

// lineSeq parses the number of a seqLine.
func lineSeq(t testing.TB, text []byte) int {
	t.Helper()
	f := bytes.Fields(text)
	if len(f) < 2 || string(f[0]) != "line" {
		t.Fatalf("not a numbered line: %.60q", text)
	}
	n, err := strconv.Atoi(string(f[1]))
	if err != nil {
		t.Fatalf("not a numbered line: %.60q", text)
	}
	return n
}

// logFiles lists NAME.log.N ... NAME.log in dir, oldest first, read
// independently of the package's reader.
func logFiles(t testing.TB, dir, name string) []string {
	t.Helper()
	var files []string
	base := filepath.Join(dir, name+".log")
	if _, err := os.Stat(base); err == nil {
		files = append(files, base)
	}
	for k := 1; ; k++ {
		p := base + "." + strconv.Itoa(k)
		if _, err := os.Stat(p); err != nil {
			break
		}
		files = append([]string{p}, files...)
	}
	return files
}

// checkFiles reads every record of the files, oldest first, and checks
// that they are numbered lines first, first+1, ... (from the first one's
// number for first < 0); it returns how many.
func checkFiles(t testing.TB, dir, name string, first int, maxSize int64) int {
	t.Helper()
	next := first
	for _, p := range logFiles(t, dir, name) {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		if maxSize > 0 && st.Size() > maxSize {
			t.Errorf("%s: %d bytes, above the rotation size %d", p, st.Size(), maxSize)
		}
		br := bufio.NewReaderSize(f, 1<<20)
		for {
			rec, err := br.ReadSlice('\n')
			if err == io.EOF && len(rec) == 0 {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			l, err := ParseRecord(rec[:len(rec)-1])
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			n := lineSeq(t, l.Text)
			if next < 0 {
				next, first = n, n
			}
			if n != next {
				f.Close()
				t.Fatalf("%s: line %d where %d was due: a line was lost or doubled", p, n, next)
			}
			next++
		}
		f.Close()
	}
	return next - first
}

func TestRotation(t *testing.T) {
	const width = 100 // records of 140 bytes
	tests := []struct {
		name      string
		rot       Rotation
		lines     int
		perWrite  int
		wantFiles int // NAME.log plus rotated files
		wantFirst int // first line still kept
	}{
		{name: "no rotation below the size", rot: Rotation{MaxSize: 1 << 20, MaxFiles: 2}, lines: 100, perWrite: 10, wantFiles: 1, wantFirst: 0},
		// 4096/140 = 29 records a file.
		{name: "rotates at the size, keeps MaxFiles", rot: Rotation{MaxSize: 4096, MaxFiles: 2}, lines: 29*3 + 5, perWrite: 7, wantFiles: 3, wantFirst: 29},
		{name: "one batch spans several files", rot: Rotation{MaxSize: 4096, MaxFiles: 5}, lines: 29 * 4, perWrite: 29 * 4, wantFiles: 4, wantFirst: 0},
		{name: "oldest dropped", rot: Rotation{MaxSize: 4096, MaxFiles: 1}, lines: 29 * 5, perWrite: 1, wantFiles: 2, wantFirst: 29 * 3},
		{name: "small size raised to the minimum", rot: Rotation{MaxSize: 100, MaxFiles: 1}, lines: 29, perWrite: 29, wantFiles: 1, wantFirst: 0},
		{name: "no rotation when negative", rot: Rotation{MaxSize: -1}, lines: 500, perWrite: 50, wantFiles: 1, wantFirst: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open("c", Options{Dir: dir, Rotation: tt.rot, Now: fixedClock})
			if err != nil {
				t.Fatal(err)
			}
			w := s.Writer(Stdout)
			var b strings.Builder
			for i := range tt.lines {
				b.WriteString(seqLine(i, width) + "\n")
				if (i+1)%tt.perWrite == 0 || i == tt.lines-1 {
					io.WriteString(w, b.String())
					b.Reset()
				}
			}
			w.Close()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			files := logFiles(t, dir, "c")
			if len(files) != tt.wantFiles {
				t.Errorf("files %v, want %d", files, tt.wantFiles)
			}
			maxSize := tt.rot.withDefaults().MaxSize
			if n := checkFiles(t, dir, "c", tt.wantFirst, maxSize); n != tt.lines-tt.wantFirst {
				t.Errorf("files hold %d lines, want %d", n, tt.lines-tt.wantFirst)
			}
		})
	}
}

func fixedClock() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC) }

func TestRotationRecordLargerThanFile(t *testing.T) {
	dir := t.TempDir()
	s, err := Open("c", Options{Dir: dir, Rotation: Rotation{MaxSize: 4096, MaxFiles: 3}, MaxLine: 10000, Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	w := s.Writer(Stdout)
	io.WriteString(w, seqLine(0, 10)+"\n"+seqLine(1, 9000)+"\n"+seqLine(2, 10)+"\n")
	s.Close()
	// line 0 | line 1 alone (larger than MaxSize) | line 2
	if files := logFiles(t, dir, "c"); len(files) != 3 {
		t.Fatalf("files %v", files)
	}
	if n := checkFiles(t, dir, "c", 0, 0); n != 3 {
		t.Fatalf("%d lines", n)
	}
}

func TestRotationResumesAfterReopen(t *testing.T) {
	dir := t.TempDir()
	rot := Rotation{MaxSize: 4096, MaxFiles: 10}
	next := 0
	for run := range 3 {
		s, err := Open("c", Options{Dir: dir, Rotation: rot, Now: fixedClock})
		if err != nil {
			t.Fatal(err)
		}
		w := s.Writer(Stderr)
		for range 20 { // 20 × 140 bytes: each run passes 4096 with the one before
			io.WriteString(w, seqLine(next, 100)+"\n")
			next++
		}
		s.Close()
		if run == 0 && len(logFiles(t, dir, "c")) != 1 {
			t.Fatal("rotated too early")
		}
	}
	if n := checkFiles(t, dir, "c", 0, rot.MaxSize); n != next {
		t.Fatalf("%d lines, want %d", n, next)
	}
	if files := logFiles(t, dir, "c"); len(files) != 3 {
		t.Errorf("files %v: a reopened file must count its size", files)
	}
}

func TestOpenRemovesFilesBeyondMaxFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"c.log.1", "c.log.2", "c.log.3", "c.log.4", "other.log.4"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o640)
	}
	s, err := Open("c", Options{Dir: dir, Rotation: Rotation{MaxFiles: 2}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for n, want := range map[string]bool{"c.log": true, "c.log.1": true, "c.log.2": true, "c.log.3": false, "c.log.4": false, "other.log.4": true} {
		_, err := os.Stat(filepath.Join(dir, n))
		if (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", n, err == nil, want)
		}
	}
}

// A rotation that cannot rename loses no line: they go on into the file.
func TestRotationFailureLosesNothing(t *testing.T) {
	dir := t.TempDir()
	// A non-empty directory where NAME.log.1 should go: rename fails.
	if err := os.MkdirAll(filepath.Join(dir, "c.log.1", "x"), 0o750); err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	s, err := Open("c", Options{Dir: dir, Rotation: Rotation{MaxSize: 4096, MaxFiles: 1}, Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w := s.Writer(Stdout)
	for i := range 100 {
		io.WriteString(w, seqLine(i, 100)+"\n")
	}
	// Rotation works again once the way is clear.
	os.RemoveAll(filepath.Join(dir, "c.log.1"))
	for i := 100; i < 200; i++ {
		io.WriteString(w, seqLine(i, 100)+"\n")
	}
	s.Close()
	if n := strings.Count(logBuf.String(), "destination failed"); n != 1 {
		t.Errorf("%d failure reports, want 1:\n%s", n, logBuf.String())
	}
	if !strings.Contains(logBuf.String(), "destination recovered") {
		t.Errorf("no recovery reported:\n%s", logBuf.String())
	}
	// The first file grew past the size while rotation failed; then
	// rotation resumed and c.log.1 was dropped at the next one.
	entries, err := TailFiles(dir, "c", All)
	if err != nil {
		t.Fatal(err)
	}
	last := -1
	for _, e := range entries {
		n := lineSeq(t, e.Text)
		if last >= 0 && n != last+1 {
			t.Fatalf("line %d after %d", n, last)
		}
		last = n
	}
	if last != 199 {
		t.Fatalf("last line %d", last)
	}
}

func TestRotationOverride(t *testing.T) {
	machine := Rotation{MaxSize: 1 << 20, MaxFiles: 5}
	for _, tt := range []struct{ o, want Rotation }{
		{Rotation{}, machine},
		{Rotation{MaxSize: 4096}, Rotation{MaxSize: 4096, MaxFiles: 5}},
		{Rotation{MaxFiles: 1}, Rotation{MaxSize: 1 << 20, MaxFiles: 1}},
		{Rotation{MaxSize: 8192, MaxFiles: 2}, Rotation{MaxSize: 8192, MaxFiles: 2}},
	} {
		if got := machine.Override(tt.o); got != tt.want {
			t.Errorf("Override(%+v) = %+v, want %+v", tt.o, got, tt.want)
		}
	}
	if got := (Rotation{}).withDefaults(); got != (Rotation{MaxSize: DefaultMaxSize, MaxFiles: DefaultMaxFiles}) {
		t.Errorf("defaults %+v", got)
	}
}
