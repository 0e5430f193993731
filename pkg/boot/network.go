package boot

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/net/dns"
	"github.com/photon-init/photon-init/pkg/net/hostnet"
)

// startNetwork starts the machine's network (package net/hostnet) and
// returns at once: static configuration is applied before it returns,
// DHCP goes on in the background, and whoever needs the network waits for
// Network().Online(). A bad ip= parameter is reported as this step's error
// after the rest of the network has started.
//
// In sandbox mode the step runs in the network namespace it was given (a
// test's own), but never in the host's: when the namespace is PID 1's, or,
// for PID 1 of a child PID namespace, when it already has a default route
// (someone's real network), the step does nothing. The host name and
// /etc/resolv.conf are left alone in sandbox mode (/etc is the host's).
func (m *Machine) startNetwork(ctx context.Context) error {
	if m.opts.Sandbox {
		if host, why := hostNetwork(); host {
			m.log.Info(fmt.Sprintf("network: sandbox mode in the host's network namespace (%s): links left alone", why))
			return nil
		}
	}
	m.mu.Lock()
	cfg, cl := m.config, m.cmdline
	m.mu.Unlock()
	if cfg == nil {
		cfg = &config.Config{}
	}
	plan, errs := hostnet.NewPlan(cfg.Network, cl.IP)
	opts := hostnet.Options{
		Log:      m.log,
		Plan:     plan,
		Hostname: m.Settings().Hostname,
	}
	if !m.opts.Sandbox {
		opts.SetHostname = func(name string) error { return unix.Sethostname([]byte(name)) }
		opts.EtcResolvConf = dns.EtcPath
	}
	n := hostnet.New(opts)
	if err := n.Start(ctx); err != nil {
		errs = append(errs, err)
	} else {
		m.mu.Lock()
		m.network = n
		m.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Network returns the machine's network manager, or nil before the network
// step ran (or when it did not).
func (m *Machine) Network() *hostnet.Manager {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.network
}

// hostNetwork reports whether this process is in the host's network
// namespace, and how it knows.
func hostNetwork() (bool, string) {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return true, "cannot read /proc/self/ns/net: " + err.Error()
	}
	if os.Getpid() != 1 {
		if init, err := os.Readlink("/proc/1/ns/net"); err == nil {
			return self == init, "same namespace as PID 1"
		}
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return true, "cannot list routes: " + err.Error()
	}
	for _, r := range routes {
		if r.Dst == nil {
			return true, "it has a default route already"
		}
		if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			return true, "it has a default route already"
		}
	}
	return false, ""
}
