//go:build !runc_nosd

package libcontainer

import (
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
)

// newCgroupManager is manager.NewWithPaths: cgroupfs or systemd, as the
// config says (photon-init patch: see cgroup_manager_nosd.go).
func newCgroupManager(config *cgroups.Cgroup, paths map[string]string) (cgroups.Manager, error) {
	return manager.NewWithPaths(config, paths)
}
