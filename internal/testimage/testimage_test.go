package testimage

import (
	"os"
	"path/filepath"
	"testing"
)

func TestBuild(t *testing.T) {
	im := Build(t, filepath.Join(t.TempDir(), "images"))
	for _, p := range []string{im.Server, im.OCIArchive, im.DockerArchive, im.DockerArchiveOCI,
		filepath.Join(im.OCILayout, "index.json"), filepath.Join(im.Rootfs, Entrypoint)} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	if again := Build(t, im.Dir); again != im {
		t.Error("second Build in the same directory did not reuse the first")
	}
}
