package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// fileSet is read access to the files of an image layout, either a
// directory or a tar archive holding one.
type fileSet interface {
	// open opens the file at name (slash-separated, relative).
	open(name string) (io.ReadCloser, error)
	// String names the directory or archive for error messages.
	String() string
}

// cleanName turns a name from an index or manifest into a relative,
// slash-separated path that cannot leave the layout.
func cleanName(name string) (string, error) {
	c := path.Clean("/" + name)[1:]
	if c == "" || strings.Contains(name, "\x00") {
		return "", fmt.Errorf("bad file name %q", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("file name %q leaves the archive", name)
		}
	}
	return c, nil
}

// dirFiles is a layout directory.
type dirFiles string

func (d dirFiles) String() string { return string(d) }

func (d dirFiles) open(name string) (io.ReadCloser, error) {
	c, err := cleanName(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d, err)
	}
	f, err := os.Open(filepath.Join(string(d), filepath.FromSlash(c)))
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %s is not a regular file", d, c)
	}
	return f, nil
}

// tarEntry is where a regular file's data lies inside an archive.
type tarEntry struct {
	offset, size int64
	link         string // a symlink's or hardlink's target name
}

// tarFiles is a layout inside an uncompressed tar archive, read in place:
// its entries are indexed once and each open reads a section of the file.
type tarFiles struct {
	path    string
	entries map[string]tarEntry
}

func (t *tarFiles) String() string { return t.path }

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// indexTar reads the headers of the tar archive at p.
func indexTar(p string) (*tarFiles, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := &countReader{r: f}
	tr := tar.NewReader(cr)
	t := &tarFiles{path: p, entries: map[string]tarEntry{}}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: read tar: %w", p, err)
		}
		name, err := cleanName(h.Name)
		if err != nil {
			continue // never opened: names are looked up cleaned
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives
			t.entries[name] = tarEntry{offset: cr.n, size: h.Size}
		case tar.TypeSymlink:
			t.entries[name] = tarEntry{link: path.Join(path.Dir(name), h.Linkname)}
			if strings.HasPrefix(h.Linkname, "/") {
				t.entries[name] = tarEntry{link: h.Linkname}
			}
		case tar.TypeLink:
			t.entries[name] = tarEntry{link: "/" + h.Linkname}
		}
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("%s: no files in the archive (is it a tar file?)", p)
	}
	return t, nil
}

// sectionFile is an open section of the archive file.
type sectionFile struct {
	*io.SectionReader
	f *os.File
}

func (s sectionFile) Close() error { return s.f.Close() }

func (t *tarFiles) open(name string) (io.ReadCloser, error) {
	c, err := cleanName(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.path, err)
	}
	for hops := 0; ; hops++ {
		e, ok := t.entries[c]
		if !ok {
			return nil, fmt.Errorf("%s: %s: %w", t.path, c, fs.ErrNotExist)
		}
		if e.link == "" {
			f, err := os.Open(t.path)
			if err != nil {
				return nil, err
			}
			return sectionFile{io.NewSectionReader(f, e.offset, e.size), f}, nil
		}
		if hops > 16 {
			return nil, fmt.Errorf("%s: %s: too many links", t.path, name)
		}
		if c, err = cleanName(e.link); err != nil {
			return nil, fmt.Errorf("%s: %w", t.path, err)
		}
	}
}

// readSmall reads a whole metadata file (at most 8 MiB) from fs.
func readSmall(files fileSet, name string) ([]byte, error) {
	rc, err := files.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxMetadataSize {
		return nil, fmt.Errorf("%s: larger than 8 MiB", name)
	}
	return data, nil
}
