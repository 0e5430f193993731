//go:build runc_nosd

package libcontainer

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
)

// newCgroupManager is manager.NewWithPaths without the systemd driver
// (photon-init patch, build tag runc_nosd): the cgroupfs managers only, so
// that the systemd driver and its D-Bus client are not linked in.
func newCgroupManager(config *cgroups.Cgroup, paths map[string]string) (cgroups.Manager, error) {
	if config == nil {
		return nil, errors.New("cgroups/manager.New: config must not be nil")
	}
	if config.Systemd {
		return nil, errors.New("the systemd cgroup driver is not built in (runc_nosd)")
	}
	if !cgroups.IsCgroup2UnifiedMode() {
		return fs.NewManager(config, paths)
	}
	// As manager.NewWithPaths: one unified path, under the key "".
	if len(paths) > 1 {
		return nil, fmt.Errorf("manager.NewWithPaths: inconsistent paths: expected a single path, got %+v", paths)
	}
	path := paths[""]
	if path != "" && (filepath.Clean(path) != path || !filepath.IsAbs(path)) {
		return nil, fmt.Errorf("manager.NewWithPaths: inconsistent paths: invalid path: %q", path)
	}
	return fs2.NewManager(config, path)
}
