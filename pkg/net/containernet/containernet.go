// Package containernet gives containers their network namespaces: for
// network_mode bridge, a named namespace on the machine's container bridge
// (package bridge) with an address kept by name on disk (package ipam),
// outbound NAT and published ports (packages nat and portmap); for
// network_mode none, a named namespace with only an up loopback. The
// container runtime joins the namespace by its path (package netnsdir), so
// the network is ready before the container's first process runs.
//
// The bridge, its address, IP forwarding and the nftables table are set
// up at the first bridged container, not before: a machine with no such
// container has none of them. Detach removes everything a container had
// (published ports, veth, namespace) except its address, which the name
// keeps for its next Attach; Release gives the address back. Cleanup, at
// start, removes what an earlier run of photon-init left: the nftables
// table, the veths and namespace files of containers that are not running.
package containernet

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/photon-init/photon-init/pkg/net/bridge"
	"github.com/photon-init/photon-init/pkg/net/ipam"
	"github.com/photon-init/photon-init/pkg/net/nat"
	"github.com/photon-init/photon-init/pkg/net/netnsdir"
	"github.com/photon-init/photon-init/pkg/net/portmap"
)

// Defaults of the bridge network.
const (
	DefaultBridge = "photon0"
	DefaultSubnet = "10.88.0.0/16"
)

// vethAlias prefixes the alias of every host-side veth: "photon:NAME".
const vethAlias = "photon:"

// Options configure a Network.
type Options struct {
	// Bridge is the bridge's name; default DefaultBridge.
	Bridge string
	// Subnet is the bridge network (IPv4); default DefaultSubnet.
	Subnet netip.Prefix
	// NetnsDir holds the containers' named network namespaces
	// (/run/photon/netns). Required.
	NetnsDir string
	// IPAMDir holds the address pool (/var/lib/photon/ipam). Required.
	IPAMDir string
	// Table is the nftables table; default nat.DefaultTable.
	Table string
	// Log receives the network's messages; nil discards them.
	Log *slog.Logger
}

// Endpoint is one container's network namespace.
type Endpoint struct {
	// Name is the container's name.
	Name string
	// Netns is the namespace's path, for the container to join.
	Netns string
	// Bridged says the namespace is on the bridge (network_mode bridge);
	// otherwise it has only a loopback (network_mode none).
	Bridged bool
	// Addr is the container's address on the bridge, Gateway the
	// bridge's (invalid when not bridged).
	Addr, Gateway netip.Addr
	// Veth is the host end of the container's veth pair.
	Veth string
	// Ports are its published ports.
	Ports []portmap.Port
}

// Network manages the containers' network namespaces.
type Network struct {
	opts  Options
	log   *slog.Logger
	ns    *netnsdir.Dir
	pool  *ipam.Pool
	nat   *nat.Table
	ports *portmap.Registry

	mu  sync.Mutex
	br  netlink.Link // nil until the first bridged container
	eps map[string]*Endpoint
}

// New checks opts and opens the namespace directory and the address pool;
// no link or rule is made before the first Attach.
func New(opts Options) (*Network, error) {
	if opts.Bridge == "" {
		opts.Bridge = DefaultBridge
	}
	if !opts.Subnet.IsValid() {
		opts.Subnet = netip.MustParsePrefix(DefaultSubnet)
	}
	if opts.Table == "" {
		opts.Table = nat.DefaultTable
	}
	if opts.NetnsDir == "" || opts.IPAMDir == "" {
		return nil, errors.New("container network: NetnsDir and IPAMDir are required")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !opts.Subnet.Addr().Is4() || opts.Subnet.Bits() > 30 || opts.Subnet.Masked() != opts.Subnet {
		return nil, fmt.Errorf("container network: subnet %s is not an IPv4 network prefix of at most /30", opts.Subnet)
	}
	pool, err := ipam.Open(opts.IPAMDir, opts.Bridge, opts.Subnet)
	if err != nil {
		return nil, fmt.Errorf("container network: %w", err)
	}
	tab, err := nat.New(nat.Config{Table: opts.Table, Bridge: opts.Bridge, Subnet: opts.Subnet})
	if err != nil {
		return nil, fmt.Errorf("container network: %w", err)
	}
	dir, err := netnsdir.Open(opts.NetnsDir)
	if err != nil {
		return nil, fmt.Errorf("container network: %w", err)
	}
	return &Network{
		opts: opts, log: log, ns: dir, pool: pool, nat: tab,
		ports: portmap.NewRegistry(), eps: map[string]*Endpoint{},
	}, nil
}

// Bridge is the bridge's name.
func (n *Network) Bridge() string { return n.opts.Bridge }

// Subnet is the bridge network.
func (n *Network) Subnet() netip.Prefix { return n.opts.Subnet }

// VethName is the host end's name of container name's veth pair: "veth"
// and ten hex digits of a hash of the name (link names have 15 bytes).
func VethName(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "veth" + hex.EncodeToString(sum[:])[:10]
}

// Cleanup removes what an earlier run left: the nftables table (unless
// this Network has set up the bridge already), and the veths and
// namespace files of containers for which keep says false. Errors are
// collected; cleanup goes on past them.
func (n *Network) Cleanup(keep func(name string) bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	if n.br == nil {
		if ok, err := nat.Exists(n.opts.Table); err != nil {
			errs = append(errs, err)
		} else if ok {
			n.log.Info("network: removing the nftables table of an earlier run", "table", n.opts.Table)
			errs = append(errs, nat.Delete(n.opts.Table))
		}
	}
	veths, err := bridge.Veths(vethAlias)
	errs = append(errs, err)
	for _, v := range veths {
		name := strings.TrimPrefix(v.Alias, vethAlias)
		if _, live := n.eps[name]; live || keep(name) {
			continue
		}
		n.log.Info("network: removing a veth of an earlier run", "link", v.Name, "container", name)
		errs = append(errs, bridge.DelVeth(v.Name))
	}
	files, err := n.ns.List()
	errs = append(errs, err)
	for _, f := range files {
		if _, live := n.eps[f]; live || keep(f) {
			continue
		}
		n.log.Info("network: removing a network namespace of an earlier run", "container", f)
		errs = append(errs, n.ns.Remove(f))
	}
	return errors.Join(errs...)
}

// Isolated gives container name a namespace of its own with only an up
// loopback (network_mode none).
func (n *Network) Isolated(name string) (*Endpoint, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.eps[name]; ok {
		return nil, fmt.Errorf("network of %s: attached already", name)
	}
	p, err := n.ns.Create(name)
	if err != nil {
		return nil, err
	}
	if err := bridge.LoopbackUp(p); err != nil {
		n.ns.Remove(name)
		return nil, fmt.Errorf("network of %s: %w", name, err)
	}
	ep := &Endpoint{Name: name, Netns: p}
	n.eps[name] = ep
	return copyOf(ep), nil
}

// Attach puts container name on the bridge: a new namespace, its address
// (the one it had, if any), a veth pair, and its published ports. A port
// another container publishes, a subnet that overlaps a route of the
// machine or any other failure is an error for this container only, and
// leaves nothing behind but the address.
func (n *Network) Attach(name string, ports []portmap.Port) (_ *Endpoint, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fail := func(err error) (*Endpoint, error) { return nil, fmt.Errorf("network of %s: %w", name, err) }
	if _, ok := n.eps[name]; ok {
		return fail(errors.New("attached already"))
	}
	if err := n.ensureBridge(); err != nil {
		return fail(err)
	}
	if err := n.ports.Reserve(name, ports); err != nil {
		return fail(err)
	}
	defer func() {
		if err != nil {
			n.ports.Release(name)
		}
	}()
	addr, err := n.pool.Get(name)
	if err != nil {
		return fail(err)
	}
	p, err := n.ns.Create(name)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err != nil {
			n.ns.Remove(name)
		}
	}()
	ep := &Endpoint{
		Name: name, Netns: p, Bridged: true, Addr: addr, Gateway: n.pool.Gateway(),
		Veth: VethName(name), Ports: append([]portmap.Port(nil), ports...),
	}
	err = bridge.AddVeth(n.br, bridge.VethConfig{
		Name: ep.Veth, Alias: vethAlias + name, Netns: p,
		Address: netip.PrefixFrom(addr, n.opts.Subnet.Bits()), Gateway: ep.Gateway,
	})
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err != nil {
			bridge.DelVeth(ep.Veth)
		}
	}()
	if err := n.nat.AddDNAT(name, dnats(addr, ports)); err != nil {
		return fail(err)
	}
	n.eps[name] = ep
	n.log.Debug("network: attached", "container", name, "addr", addr, "veth", ep.Veth, "ports", len(ports))
	return copyOf(ep), nil
}

// ensureBridge sets up the bridge and the nftables table once per run.
func (n *Network) ensureBridge() error {
	if n.br != nil {
		return nil
	}
	br, err := bridge.Ensure(bridge.Config{Name: n.opts.Bridge, Subnet: n.opts.Subnet, Gateway: n.pool.Gateway()})
	if err != nil {
		return err
	}
	if err := n.nat.Setup(); err != nil {
		return err
	}
	n.br = br
	n.log.Info(fmt.Sprintf("network: bridge %s up with %s, NAT through nftables table %s",
		n.opts.Bridge, netip.PrefixFrom(n.pool.Gateway(), n.opts.Subnet.Bits()), n.opts.Table))
	return nil
}

// Detach removes container name's published ports, veth pair and
// namespace; its address stays reserved for its next Attach. Detaching a
// container that is not attached does nothing.
func (n *Network) Detach(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	ep, ok := n.eps[name]
	if !ok {
		return nil
	}
	var errs []error
	if ep.Bridged {
		errs = append(errs, n.nat.DelDNAT(name), bridge.DelVeth(ep.Veth))
		n.ports.Release(name)
	}
	errs = append(errs, n.ns.Remove(name))
	delete(n.eps, name)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network of %s: detach: %w", name, err)
	}
	n.log.Debug("network: detached", "container", name)
	return nil
}

// Release gives back container name's address (the container is gone
// for good).
func (n *Network) Release(name string) error {
	return n.pool.Release(name)
}

// Addresses returns every name that holds an address, with it.
func (n *Network) Addresses() (map[string]netip.Addr, error) {
	return n.pool.All()
}

// Endpoint returns container name's endpoint, if attached.
func (n *Network) Endpoint(name string) (*Endpoint, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ep, ok := n.eps[name]
	if !ok {
		return nil, false
	}
	return copyOf(ep), true
}

// Endpoints returns every attached endpoint, by name.
func (n *Network) Endpoints() []*Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*Endpoint, 0, len(n.eps))
	for _, ep := range n.eps {
		out = append(out, copyOf(ep))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func copyOf(ep *Endpoint) *Endpoint {
	c := *ep
	c.Ports = append([]portmap.Port(nil), ep.Ports...)
	return &c
}

// dnats turns published ports into the nat table's rules.
func dnats(addr netip.Addr, ports []portmap.Port) []nat.DNAT {
	out := make([]nat.DNAT, 0, len(ports))
	for _, p := range ports {
		d := nat.DNAT{HostPort: p.HostPort, Protocol: p.Protocol, To: netip.AddrPortFrom(addr, p.ContainerPort)}
		if !p.Any() {
			d.HostIP = p.HostIP
		}
		out = append(out, d)
	}
	return out
}
