//go:build runc_nosd

package specconv

import (
	"errors"

	systemdDbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// initSystemdProps is only called for the systemd cgroup driver, which a
// build with the runc_nosd tag leaves out (photon-init patch).
func initSystemdProps(*specs.Spec) ([]systemdDbus.Property, error) {
	return nil, errors.New("the systemd cgroup driver is not built in (runc_nosd)")
}
