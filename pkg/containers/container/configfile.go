package container

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// configNice is the nice value of the thread that writes config.json in
// the background: encoding the spec is the costliest part of Create the
// first time (encoding/json builds its encoders for runtime-spec's types),
// and nothing in photon-init reads the file, so it waits for the CPU to
// be otherwise idle rather than delay the container's own start.
const configNice = 19

// configFile writes a container's config.json once: in the background
// once the container runs (Start), or at once when it is asked for
// (ConfigPath) or the container is destroyed.
type configFile struct {
	once sync.Once
	err  error
}

// write writes spec to path unless it has been written (or is being
// written: then it waits).
func (f *configFile) write(path string, spec any) error {
	f.once.Do(func() {
		b, err := json.MarshalIndent(spec, "", "\t")
		if err != nil {
			f.err = fmt.Errorf("encode config.json: %w", err)
			return
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
			f.err = fmt.Errorf("write %s: %w", path, err)
		}
	})
	return f.err
}

// settle marks the file as handled without writing it if it has not been
// written yet, or waits for a write in progress: after it no write can
// happen (Destroy).
func (f *configFile) settle() {
	f.once.Do(func() {})
}
