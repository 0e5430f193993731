package main

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/test/bench/internal/ocilayout"
)

// The unpack section's tools.
const (
	toolPhoton   = "photon-init store"
	toolTar      = "gzip -d | tar -x"
	toolUmoci    = "umoci unpack"
	toolUmociRaw = "umoci raw unpack"
)

// unpackTools lists the tools in table order.
var unpackTools = []string{toolPhoton, toolTar, toolUmoci, toolUmociRaw}

// unpackNotes says what each tool does.
var unpackNotes = map[string]string{
	toolPhoton:   "image.Open + Store.Pull(oci:LAYOUT): each layer into its own directory, digests and DiffIDs verified, syncfs",
	toolTar:      "tar -xzf BLOB for each layer, in order, each into its own directory (GNU tar runs gzip -d)",
	toolUmoci:    "umoci unpack --image LAYOUT: one rootfs, digests verified, then its mtree manifest (hashes every file)",
	toolUmociRaw: "umoci raw unpack: the rootfs alone, no config, no mtree",
}

// UnpackRun is one tool's run.
type UnpackRun struct {
	Tool      string  `json:"tool"`
	Iteration int     `json:"iteration"`
	Seconds   float64 `json:"seconds"`
	Error     string  `json:"error,omitempty"`
}

// UnpackStat is one tool's statistics.
type UnpackStat struct {
	Tool    string `json:"tool"`
	Note    string `json:"note"`
	Seconds Stat   `json:"seconds"`
	// MBps is the uncompressed layer bytes over the time, MB/s.
	MBps Stat `json:"mb_per_s"`
	// VsTar is tar's median time over this tool's (the throughput ratio).
	VsTar float64 `json:"throughput_vs_tar"`
}

// UnpackReport is the unpack section's result.
type UnpackReport struct {
	Layers     int          `json:"layers"`
	Files      int          `json:"files"`
	FileBytes  int64        `json:"file_bytes"`
	TarBytes   int64        `json:"tar_bytes"`
	GzipBytes  int64        `json:"gzip_bytes"`
	Dir        string       `json:"dir"`
	Conditions string       `json:"conditions"`
	Runs       []UnpackRun  `json:"runs"`
	Summary    []UnpackStat `json:"summary"`
}

// genStats describes the generated image.
type genStats struct {
	files              int
	fileBytes, tarSize int64
	layers             []ocilayout.Layer
}

// runUnpack generates the image (once; it is kept in the work directory)
// and times each tool on it, interleaved.
func (b *bench) runUnpack(ctx context.Context) (*UnpackReport, error) {
	layout := filepath.Join(b.work, fmt.Sprintf("unpack-%dmb-oci", b.o.unpackMB))
	gs, err := generateImage(layout, int64(b.o.unpackMB)<<20)
	if err != nil {
		return nil, err
	}
	rep := &UnpackReport{Layers: len(gs.layers), Files: gs.files, FileBytes: gs.fileBytes, TarBytes: gs.tarSize, Dir: b.o.unpackDir}
	for _, l := range gs.layers {
		rep.GzipBytes += l.Desc.Size
	}
	tmpfs, err := isTmpfs(b.o.unpackDir)
	if err != nil {
		return nil, err
	}
	if tmpfs {
		rep.Conditions = "output to tmpfs (" + b.o.unpackDir + "); the image's blobs read from the page cache (read once before the runs)"
	} else {
		rep.Conditions = "output to " + b.o.unpackDir + " (not tmpfs): page cache dropped before each run, each run ends with syncfs of the output's filesystem"
	}
	b.logf("unpack: %d layers, %d files, %s of files, %s of tar, %s gzip; %s",
		rep.Layers, rep.Files, mib(rep.FileBytes), mib(rep.TarBytes), mib(rep.GzipBytes), rep.Conditions)
	if err := warm(layout); err != nil {
		return nil, err
	}
	var errs []error
	for i := 0; i < b.o.unpackN; i++ {
		rot := i % len(unpackTools)
		for _, tool := range append(unpackTools[rot:], unpackTools[:rot]...) {
			dir, err := os.MkdirTemp(b.o.unpackDir, "photon-bench-unpack-")
			if err != nil {
				return nil, err
			}
			if !tmpfs {
				if err := dropCaches(); err != nil {
					return nil, err
				}
			}
			t0 := time.Now()
			err = unpackWith(ctx, tool, layout, gs.layers, dir)
			if err == nil && !tmpfs {
				err = syncfs(dir)
			}
			r := UnpackRun{Tool: tool, Iteration: i, Seconds: time.Since(t0).Seconds()}
			if rerr := os.RemoveAll(dir); rerr != nil {
				errs = append(errs, rerr)
			}
			if err != nil {
				r.Error = err.Error()
				errs = append(errs, fmt.Errorf("%s, run %d: %w", tool, i+1, err))
				b.logf("  %-18s run %d: FAILED: %s", tool, i+1, firstLine(r.Error))
			} else {
				b.logf("  %-18s run %d: %.2fs, %.0f MB/s", tool, i+1, r.Seconds, float64(gs.tarSize)/1e6/r.Seconds)
			}
			rep.Runs = append(rep.Runs, r)
		}
	}
	var tar Stat
	for _, tool := range unpackTools {
		var secs, rate []float64
		for _, r := range rep.Runs {
			if r.Tool == tool && r.Error == "" {
				secs = append(secs, r.Seconds)
				rate = append(rate, float64(gs.tarSize)/1e6/r.Seconds)
			}
		}
		s := UnpackStat{Tool: tool, Note: unpackNotes[tool], Seconds: statOf(secs), MBps: statOf(rate)}
		if tool == toolTar {
			tar = s.Seconds
		}
		rep.Summary = append(rep.Summary, s)
	}
	for i := range rep.Summary {
		rep.Summary[i].VsTar = ratio(tar, rep.Summary[i].Seconds)
	}
	if len(errs) > 0 {
		return rep, errors.Join(errs...)
	}
	return rep, nil
}

// unpackWith unpacks the image in layout into dir with tool.
func unpackWith(ctx context.Context, tool, layout string, layers []ocilayout.Layer, dir string) error {
	switch tool {
	case toolPhoton:
		s, err := image.Open(dir, image.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			return err
		}
		_, err = s.Pull(ctx, "oci:"+layout+":latest")
		return err
	case toolTar:
		for i, l := range layers {
			out := filepath.Join(dir, fmt.Sprintf("layer%d", i))
			if err := os.Mkdir(out, 0o755); err != nil {
				return err
			}
			blob := filepath.Join(layout, "blobs", l.Desc.Digest.Algorithm().String(), l.Desc.Digest.Encoded())
			if out, err := exec.CommandContext(ctx, "tar", "-xzf", blob, "-C", out).CombinedOutput(); err != nil {
				return fmt.Errorf("tar: %w\n%s", err, out)
			}
		}
		return nil
	case toolUmoci, toolUmociRaw:
		args := []string{"unpack", "--image", layout + ":latest", filepath.Join(dir, "bundle")}
		if tool == toolUmociRaw {
			args = []string{"raw", "unpack", "--image", layout + ":latest", filepath.Join(dir, "rootfs")}
		}
		if out, err := exec.CommandContext(ctx, "umoci", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("umoci: %w\n%s", err, out)
		}
		return nil
	}
	return fmt.Errorf("unknown tool %q", tool)
}

// isTmpfs says whether dir is on a tmpfs.
func isTmpfs(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Errorf("unpack directory: %w", err)
	}
	return st.Type == unix.TMPFS_MAGIC, nil
}

// dropCaches writes back and drops the page cache.
func dropCaches() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		return fmt.Errorf("dropping caches: %w", err)
	}
	return nil
}

// syncfs writes back the filesystem holding dir.
func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// warm reads every blob of the layout, so that all tools find them in
// the page cache.
func warm(layout string) error {
	return filepath.WalkDir(filepath.Join(layout, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(io.Discard, f)
		return err
	})
}

// genVersion names the generator's output; change it when the generator
// changes, so a kept image is made again.
const genVersion = "v1"

// generateImage writes (unless the layout already holds this version)
// an image of about size bytes of files in four gzip layers (40, 30, 20
// and 10% of the bytes): half of each layer incompressible (random bytes),
// half text-like (words, about 3:1 under gzip); files of a few KiB to a
// few MiB in nested directories, and some symbolic links. The content
// comes from a seeded generator: every run makes the same image.
func generateImage(layout string, size int64) (*genStats, error) {
	stamp := filepath.Join(layout, "bench-generated")
	gs := &genStats{}
	want := fmt.Sprintf("%s %d", genVersion, size)
	if data, err := os.ReadFile(stamp); err == nil && strings.HasPrefix(string(data), want+"\n") {
		var n int
		if _, err := fmt.Sscanf(strings.TrimPrefix(string(data), want+"\n"), "%d %d %d", &n, &gs.fileBytes, &gs.tarSize); err == nil {
			gs.files = n
			m, err := readManifest(layout)
			if err == nil {
				for _, d := range m.Layers {
					gs.layers = append(gs.layers, ocilayout.Layer{Desc: d})
				}
				return gs, nil
			}
		}
	}
	w, err := ocilayout.Create(layout)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewChaCha8([32]byte{'p', 'h', 'o', 't', 'o', 'n'}))
	words := wordPool(rng)
	for i, share := range []int64{40, 30, 20, 10} {
		budget := size * share / 100
		var files int
		var bytes int64
		l, err := w.Layer(gzip.DefaultCompression, func(tw *tar.Writer) error {
			var err error
			files, bytes, err = fillLayer(tw, rng, words, i, budget)
			return err
		})
		if err != nil {
			return nil, err
		}
		gs.layers = append(gs.layers, l)
		gs.files += files
		gs.fileBytes += bytes
		gs.tarSize += l.TarSize
	}
	if err := w.Finish("latest", ocispec.ImageConfig{Env: []string{"PATH=/bin"}}, gs.layers); err != nil {
		return nil, err
	}
	err = os.WriteFile(stamp, fmt.Appendf(nil, "%s\n%d %d %d\n", want, gs.files, gs.fileBytes, gs.tarSize), 0o644)
	return gs, err
}

// fillLayer writes directories, files and links until budget bytes of
// file content are written.
func fillLayer(tw *tar.Writer, rng *rand.Rand, words []byte, layer int, budget int64) (files int, written int64, err error) {
	root := fmt.Sprintf("layer%d", layer)
	if err := tw.WriteHeader(&tar.Header{Name: root + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		return 0, 0, err
	}
	dirs := []string{root}
	buf := make([]byte, 8<<20)
	for written < budget {
		// A new directory now and then, under one that exists.
		if files%25 == 0 {
			d := fmt.Sprintf("%s/d%03d", dirs[rng.IntN(len(dirs))], len(dirs))
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
				return files, written, err
			}
			dirs = append(dirs, d)
		}
		dir := dirs[rng.IntN(len(dirs))]
		// Sizes: mostly small, some medium, a few large.
		var n int64
		switch p := rng.IntN(100); {
		case p < 70:
			n = 512 + rng.Int64N(16<<10)
		case p < 95:
			n = 64<<10 + rng.Int64N(960<<10)
		default:
			n = 2<<20 + rng.Int64N(6<<20)
		}
		n = min(n, budget-written+512)
		data := buf[:n]
		if files%2 == 0 {
			fillRandom(rng, data)
		} else {
			off := rng.IntN(len(words) - int(n))
			copy(data, words[off:])
		}
		name := fmt.Sprintf("%s/f%06d", dir, files)
		h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: n, ModTime: time.Unix(1700000000, 0)}
		if err := tw.WriteHeader(h); err != nil {
			return files, written, err
		}
		if _, err := tw.Write(data); err != nil {
			return files, written, err
		}
		if files%50 == 0 {
			l := &tar.Header{Name: name + ".link", Typeflag: tar.TypeSymlink, Linkname: fmt.Sprintf("f%06d", files), Mode: 0o777}
			if err := tw.WriteHeader(l); err != nil {
				return files, written, err
			}
		}
		files++
		written += n
	}
	return files, written, nil
}

// fillRandom fills b with random bytes.
func fillRandom(rng *rand.Rand, b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
}

// wordPool is 16 MiB of text: random words from a small vocabulary, in
// lines, which gzip compresses about 3:1.
func wordPool(rng *rand.Rand) []byte {
	vocab := strings.Fields(`the of and to in is that for it as was with be by on not he this are or his from at which but have
		an had they you were their one all we can her has there been if more when will would who so no container image layer
		kernel module network bridge photon init process signal mount overlay volume restart health ready boot timeline
		supervisor manifest config digest blob tar gzip unpack store runtime namespace cgroup memory cpu seccomp`)
	out := make([]byte, 0, 16<<20+64)
	col := 0
	for len(out) < 16<<20 {
		w := vocab[rng.IntN(len(vocab))]
		out = append(out, w...)
		col += len(w) + 1
		if col > 72 {
			out = append(out, '\n')
			col = 0
		} else {
			out = append(out, ' ')
		}
	}
	return out[:16<<20]
}

// unpackTable renders the unpack section.
func unpackTable(r *UnpackReport) *table {
	t := newTable("tool", "time", "throughput", "vs tar -x", "what it does")
	for _, s := range r.Summary {
		t.add(s.Tool, s.Seconds.seconds(), s.MBps.format("%.0f MB/s"), fmtRatio(s.VsTar), s.Note)
	}
	return t
}
