// Package hostnet is the machine's own network: it brings lo up, configures
// links as a Plan says (static addresses, routes, MTU, router
// advertisements, DHCPv4), follows links that appear late (a NIC whose
// module loads after the network started), keeps resolv.conf and the host
// name, and tells whoever waits (containers with depends_on:
// network-online) when the network is online. It releases its DHCP leases
// when stopped.
//
// "Online" is reached the first time a link's configuration is complete:
// its static addresses and routes applied and, when it runs DHCP, a lease
// bound and applied. A machine whose plan configures no link (ip=off, or no
// ethernet device) never gets online.
//
// The manager works in the network namespace of the process; it never
// switches namespaces.
package hostnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/net/dhcp"
	"github.com/photon-init/photon-init/pkg/net/dns"
	"github.com/photon-init/photon-init/pkg/net/link"
)

// DHCPRouteMetric is the base metric of routes from leases; each link adds
// its index, so that two links' default routes do not replace each other
// and static routes (metric 0 unless configured) win.
const DHCPRouteMetric = 1024

// Ranks of resolv.conf sources: static configuration before leases.
const (
	rankStatic = 0
	rankLease  = 10
)

// Options configure a Manager.
type Options struct {
	// Log gets the manager's messages (nil: discarded).
	Log *slog.Logger
	// Plan is what to configure.
	Plan Plan
	// Hostname is the configured host name (init.yaml or
	// photon.hostname); when empty, the plan's (ip=), then a lease's, then
	// DefaultHostname is used.
	Hostname string
	// DefaultHostname is the last resort; "" computes StableHostname from
	// IdentityRoot and the ethernet links (the first one to appear, when
	// there was none at Start: drivers may still be loading).
	DefaultHostname string
	// IdentityRoot is where StableHostname reads the machine's identity
	// (etc/machine-id, sys/class/dmi/id/product_uuid); "" means "/".
	IdentityRoot string
	// SetHostname sets the kernel's host name; nil never changes it
	// (sandbox mode), though Hostname() still reports the choice.
	SetHostname func(string) error
	// ResolvConf is the file written (default dns.DefaultPath).
	ResolvConf string
	// EtcResolvConf, when set, is made a link to ResolvConf (see
	// dns.LinkEtc); "" leaves /etc/resolv.conf alone.
	EtcResolvConf string
	// DHCP are the DHCP client's timers (zero: defaults).
	DHCP dhcp.Timing
}

// Manager runs the machine's network.
type Manager struct {
	opts   Options
	log    *slog.Logger
	resolv *dns.Resolv

	online     chan struct{}
	onlineOnce sync.Once

	cancel  context.CancelFunc
	watcher sync.WaitGroup // the link watcher
	clients sync.WaitGroup // DHCP clients

	mu       sync.Mutex
	links    map[int]*linkState // every link seen, by index
	claimed  map[int]int        // First entries: entry index → link index
	hostname string
	// provisional: the default host name was chosen before any ethernet
	// link existed (its driver still loading); the first one to appear
	// gives the MAC-derived name.
	provisional bool
	stopped     bool
}

// linkState is what the manager knows of one link.
type linkState struct {
	index  int
	name   string
	entry  *Interface // nil: not managed
	stop   context.CancelFunc
	done   chan struct{}
	lease  *dhcp.Lease
	routes []link.Route // routes from the lease
	err    error
}

// New returns a manager; Start starts it.
func New(opts Options) *Manager {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		opts:    opts,
		log:     log,
		resolv:  dns.New(opts.ResolvConf),
		online:  make(chan struct{}),
		links:   map[int]*linkState{},
		claimed: map[int]int{},
	}
}

// Start brings lo up, writes resolv.conf, sets the host name, configures
// the links present now (static configuration is applied before Start
// returns; DHCP runs in the background) and follows links that come and
// go until Stop. It returns an error only when links cannot be followed at
// all; each link's own trouble is logged.
func (m *Manager) Start(ctx context.Context) error {
	if err := link.LoopbackUp(); err != nil {
		m.log.Error(fmt.Sprintf("network: %v", err))
	}
	if err := m.resolv.Set("static", rankStatic, m.opts.Plan.DNS); err != nil {
		m.log.Error(fmt.Sprintf("network: %v", err))
	}
	if err := m.resolv.Write(); err != nil {
		m.log.Error(fmt.Sprintf("network: %v", err))
	}
	if etc := m.opts.EtcResolvConf; etc != "" {
		switch replaced, err := dns.LinkEtc(etc, m.resolv.Path()); {
		case err != nil:
			m.log.Warn(fmt.Sprintf("network: %v; resolvers read the file that is there", err))
		case !replaced:
			m.log.Info(fmt.Sprintf("network: %s is a file of its own: left alone (photon-init's is %s)", etc, m.resolv.Path()))
		}
	}

	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	updates := make(chan netlink.LinkUpdate, 64)
	if err := m.subscribe(ctx, updates); err != nil {
		cancel()
		return fmt.Errorf("follow links: %w", err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		cancel()
		return fmt.Errorf("list links: %w", err)
	}
	m.initHostname(links)
	if m.opts.Plan.Off {
		m.log.Info("network: off (ip=off): only lo is up")
	}
	for _, l := range links {
		m.linkAdded(ctx, l)
	}
	m.watcher.Add(1)
	safe.Go(m.log, "network links", func() {
		defer m.watcher.Done()
		m.watch(ctx, updates)
	})
	return nil
}

// subscribe starts netlink link notifications into updates.
func (m *Manager) subscribe(ctx context.Context, updates chan netlink.LinkUpdate) error {
	return netlink.LinkSubscribeWithOptions(updates, ctx.Done(), netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			if ctx.Err() == nil {
				m.log.Warn(fmt.Sprintf("network: link notifications: %v", err))
			}
		},
	})
}

// watch handles link notifications until ctx ends. When the kernel's
// notifications are lost (the socket overran), it subscribes again and
// lists the links to catch up.
func (m *Manager) watch(ctx context.Context, updates chan netlink.LinkUpdate) {
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-updates:
			if ok {
				if u.Header.Type == unix.RTM_DELLINK {
					m.linkRemoved(u.Link)
				} else {
					m.linkAdded(ctx, u.Link)
				}
				continue
			}
		}
		// The subscription ended: start again.
		for ctx.Err() == nil {
			updates = make(chan netlink.LinkUpdate, 64)
			err := m.subscribe(ctx, updates)
			if err == nil {
				links, lerr := netlink.LinkList()
				err = lerr
				for _, l := range links {
					m.linkAdded(ctx, l)
				}
			}
			if err == nil {
				break
			}
			m.log.Warn(fmt.Sprintf("network: follow links: %v", err))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// entryFor returns the first plan entry that takes the link, or -1.
// Called with m.mu held.
func (m *Manager) entryFor(l netlink.Link) int {
	for i := range m.opts.Plan.Interfaces {
		e := &m.opts.Plan.Interfaces[i]
		if !e.Match.Matches(l) {
			continue
		}
		if e.First {
			if idx, ok := m.claimed[i]; ok && idx != l.Attrs().Index {
				continue
			}
		}
		return i
	}
	return -1
}

// linkAdded configures a link seen for the first time.
func (m *Manager) linkAdded(ctx context.Context, l netlink.Link) {
	a := l.Attrs()
	if a.Flags&unix.IFF_LOOPBACK != 0 || a.Name == "lo" {
		return
	}
	m.mu.Lock()
	if m.stopped || m.links[a.Index] != nil {
		m.mu.Unlock()
		return
	}
	st := &linkState{index: a.Index, name: a.Name}
	m.links[a.Index] = st
	rename := m.provisional && link.IsEthernet(l)
	if rename {
		m.provisional = false
	}
	i := m.entryFor(l)
	if i >= 0 {
		st.entry = &m.opts.Plan.Interfaces[i]
		if st.entry.First {
			m.claimed[i] = a.Index
		}
	}
	m.mu.Unlock()
	if rename {
		m.setHostname(StableHostname(m.identityRoot(), []netlink.Link{l}), "default until DHCP gives one")
	}
	if st.entry == nil {
		m.log.Debug(fmt.Sprintf("network: %s: no configuration for it", a.Name), "type", l.Type())
		return
	}
	e := st.entry
	if e.Off {
		m.log.Info(fmt.Sprintf("network: %s: left unconfigured (%s)", a.Name, e.Source))
		return
	}
	err := link.Apply(l, e.Static)
	st.err = err
	if err != nil {
		m.log.Error(fmt.Sprintf("network: %s (%s): %v", a.Name, e.Source, oneLine(err)))
	}
	if desc := describeStatic(e.Static); desc != "" {
		m.log.Info(fmt.Sprintf("network: %s: %s (%s)", a.Name, desc, e.Source))
	}
	if !e.DHCP {
		if err == nil {
			m.setOnline(a.Name)
		}
		return
	}
	m.log.Info(fmt.Sprintf("network: %s: DHCP in the background (%s)", a.Name, e.Source))
	m.startDHCP(ctx, st, l)
}

// startDHCP starts the link's DHCP client.
func (m *Manager) startDHCP(ctx context.Context, st *linkState, l netlink.Link) {
	cctx, cancel := context.WithCancel(ctx)
	st.stop, st.done = cancel, make(chan struct{})
	c := dhcp.New(dhcp.Options{
		Interface: st.name,
		Hostname:  m.configuredHostname(),
		Timing:    m.opts.DHCP,
		Log:       m.log,
		Bound:     func(lease, prev *dhcp.Lease) error { return m.leaseBound(st, lease, prev) },
		Lost:      func(lease *dhcp.Lease, reason string) { m.leaseLost(st, lease, reason) },
	})
	m.clients.Add(1)
	safe.Go(m.log, "dhcp "+st.name, func() {
		defer m.clients.Done()
		defer close(st.done)
		if err := c.Run(cctx); err != nil {
			m.log.Error(fmt.Sprintf("dhcp: %s: %v", st.name, err))
		}
	})
}

// linkRemoved stops whatever ran for a link that is gone.
func (m *Manager) linkRemoved(l netlink.Link) {
	a := l.Attrs()
	m.mu.Lock()
	st := m.links[a.Index]
	delete(m.links, a.Index)
	for i, idx := range m.claimed {
		if idx == a.Index {
			delete(m.claimed, i)
		}
	}
	m.mu.Unlock()
	if st == nil || st.entry == nil {
		return
	}
	m.log.Info(fmt.Sprintf("network: %s is gone", a.Name))
	if st.stop != nil {
		st.stop()
	}
}

// leaseBound applies a lease: address (with the lease's lifetime), MTU,
// routes, DNS and, when none is configured, the host name.
func (m *Manager) leaseBound(st *linkState, l, prev *dhcp.Lease) error {
	ln, err := netlink.LinkByIndex(st.index)
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	var errs []error
	if prev != nil && prev.Address != l.Address {
		errs = append(errs, link.DelAddress(ln, prev.Address))
	}
	errs = append(errs, link.AddAddress(ln, l.Address, l.Remaining(time.Now())))
	if l.MTU > 0 && st.entry.Static.MTU == 0 {
		errs = append(errs, link.SetMTU(ln, l.MTU))
	}
	routes := leaseRoutes(l, DHCPRouteMetric+st.index)
	m.mu.Lock()
	old := st.routes
	st.routes, st.lease = routes, l
	m.mu.Unlock()
	for _, r := range old {
		if !slices.Contains(routes, r) {
			errs = append(errs, link.DelRoute(ln, r))
		}
	}
	for _, r := range routes {
		errs = append(errs, link.AddRoute(ln, r))
	}
	errs = append(errs, m.resolv.Set("dhcp "+st.name, rankLease, dns.Config{Nameservers: l.DNS, Search: l.Search}))
	if l.Hostname != "" && m.configuredHostname() == "" {
		m.setHostname(l.Hostname, "DHCP on "+st.name)
	}
	err = errors.Join(errs...)
	if err == nil {
		m.setOnline(st.name)
	}
	return err
}

// leaseLost removes what a lease brought.
func (m *Manager) leaseLost(st *linkState, l *dhcp.Lease, reason string) {
	m.mu.Lock()
	routes := st.routes
	st.routes, st.lease = nil, nil
	m.mu.Unlock()
	var errs []error
	if ln, err := netlink.LinkByIndex(st.index); err == nil {
		for _, r := range routes {
			errs = append(errs, link.DelRoute(ln, r))
		}
		errs = append(errs, link.DelAddress(ln, l.Address))
	}
	errs = append(errs, m.resolv.Remove("dhcp "+st.name))
	if err := errors.Join(errs...); err != nil {
		m.log.Warn(fmt.Sprintf("dhcp: %s: remove lease %s (%s): %v", st.name, l.Address, reason, oneLine(err)))
	}
}

// leaseRoutes are the routes a lease asks for: its classless static routes
// when it has them (RFC 3442: the routers are then ignored), else a
// default route through its first router.
func leaseRoutes(l *dhcp.Lease, metric int) []link.Route {
	var out []link.Route
	src := l.Address.Addr()
	if len(l.Routes) > 0 {
		for _, r := range l.Routes {
			out = append(out, link.Route{To: r.To, Via: r.Via, Metric: metric, Protocol: link.ProtoDHCP, Src: src})
		}
		return out
	}
	if len(l.Routers) > 0 {
		out = append(out, link.Route{To: netip.MustParsePrefix("0.0.0.0/0"), Via: l.Routers[0], Metric: metric, Protocol: link.ProtoDHCP, Src: src})
	}
	return out
}

// initHostname chooses and sets the host name at start.
func (m *Manager) initHostname(links []netlink.Link) {
	if name := m.configuredHostname(); name != "" {
		m.setHostname(name, "configuration")
		return
	}
	def := m.opts.DefaultHostname
	if def == "" {
		def = StableHostname(m.identityRoot(), links)
		m.mu.Lock()
		m.provisional = def == HostnamePrefix
		m.mu.Unlock()
	}
	m.setHostname(def, "default until DHCP gives one")
}

// identityRoot is Options.IdentityRoot or "/".
func (m *Manager) identityRoot() string {
	if m.opts.IdentityRoot == "" {
		return "/"
	}
	return m.opts.IdentityRoot
}

// configuredHostname is init.yaml's or the command line's host name.
func (m *Manager) configuredHostname() string {
	if m.opts.Hostname != "" {
		return m.opts.Hostname
	}
	return m.opts.Plan.Hostname
}

// setHostname records the host name and sets it in the kernel.
func (m *Manager) setHostname(name, why string) {
	if !config.ValidHostname(name) {
		m.log.Warn(fmt.Sprintf("network: host name %q (%s) is not valid: ignored", name, why))
		return
	}
	m.mu.Lock()
	same := m.hostname == name
	m.hostname = name
	m.mu.Unlock()
	if same {
		return
	}
	if m.opts.SetHostname == nil {
		m.log.Debug(fmt.Sprintf("network: host name %s (%s), not set in sandbox mode", name, why))
		return
	}
	if err := m.opts.SetHostname(name); err != nil {
		m.log.Error(fmt.Sprintf("network: set host name %s: %v", name, err))
		return
	}
	m.log.Info(fmt.Sprintf("network: host name %s (%s)", name, why))
}

// setOnline closes the online channel the first time.
func (m *Manager) setOnline(name string) {
	m.onlineOnce.Do(func() {
		m.log.Info(fmt.Sprintf("network: online (%s configured)", name))
		close(m.online)
	})
}

// Online returns a channel closed when the network is online (see the
// package documentation). A nil Manager's channel is never closed.
func (m *Manager) Online() <-chan struct{} {
	if m == nil {
		return nil
	}
	return m.online
}

// WaitOnline waits until the network is online or ctx ends.
func (m *Manager) WaitOnline(ctx context.Context) error {
	select {
	case <-m.Online():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the network: %w", ctx.Err())
	}
}

// Hostname returns the host name the manager chose.
func (m *Manager) Hostname() string {
	if m == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hostname
}

// ResolvConf returns the current resolv.conf and a channel closed at its
// next change: a container's copy is rewritten each time it closes (or use
// FollowResolvConf). A nil Manager gives an empty file that never changes.
func (m *Manager) ResolvConf() ([]byte, <-chan struct{}) {
	if m == nil {
		return nil, nil
	}
	return m.resolv.Current()
}

// FollowResolvConf keeps a copy of resolv.conf at path, rewritten in place
// at every change, until ctx ends (see dns.Resolv.Follow).
func (m *Manager) FollowResolvConf(ctx context.Context, path string) {
	m.resolv.Follow(ctx, path, func(err error) { m.log.Warn(fmt.Sprintf("network: %v", err)) })
}

// ResolvConfPath is the file the manager writes.
func (m *Manager) ResolvConfPath() string { return m.resolv.Path() }

// LinkStatus describes one configured link.
type LinkStatus struct {
	Name   string
	Index  int
	Source string
	DHCP   bool
	// Lease is the current lease (nil when none).
	Lease *dhcp.Lease
	// Err is the error applying the static configuration, if any.
	Err error
}

// Links returns the links the manager configures, by index.
func (m *Manager) Links() []LinkStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []LinkStatus
	for _, st := range m.links {
		if st.entry == nil || st.entry.Off {
			continue
		}
		out = append(out, LinkStatus{Name: st.name, Index: st.index, Source: st.entry.Source, DHCP: st.entry.DHCP, Lease: st.lease, Err: st.err})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// Stop stops following links and releases every DHCP lease (removing the
// leased addresses and routes), waiting for that until ctx ends. Static
// configuration stays.
func (m *Manager) Stop(ctx context.Context) error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	if m.cancel != nil {
		m.cancel()
	}
	done := make(chan struct{})
	go func() {
		m.watcher.Wait()
		m.clients.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("release DHCP leases: %w", ctx.Err())
	}
}

// describeStatic summarizes a static configuration for the console.
func describeStatic(s link.Static) string {
	var parts []string
	for _, a := range s.Addresses {
		parts = append(parts, a.String())
	}
	for _, r := range s.Routes {
		parts = append(parts, r.String())
	}
	if s.MTU > 0 {
		parts = append(parts, fmt.Sprintf("mtu %d", s.MTU))
	}
	if s.AcceptRA != nil {
		parts = append(parts, fmt.Sprintf("accept_ra %v", *s.AcceptRA))
	}
	return strings.Join(parts, ", ")
}

// oneLine joins a multi-line (joined) error.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
