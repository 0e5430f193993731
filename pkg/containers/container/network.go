package container

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/runtime-spec/specs-go"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
	"github.com/photon-init/photon-init/pkg/net/containernet"
	"github.com/photon-init/photon-init/pkg/net/portmap"
)

// NetworkBridge is the default network mode: the container's own network
// namespace on the machine's container bridge.
const NetworkBridge = "bridge"

// NetworkOptions configure the containers' networks (see the package
// documentation, "Networks").
type NetworkOptions struct {
	// Bridge is the bridge's name; default containernet.DefaultBridge
	// (photon0).
	Bridge string
	// Subnet is the bridge network, IPv4; default
	// containernet.DefaultSubnet (10.88.0.0/16).
	Subnet netip.Prefix
	// NetnsDir holds the containers' named network namespaces. Default
	// "netns" beside StateDir (/run/photon/netns).
	NetnsDir string
	// IPAMDir holds the bridge's address pool. Default DataDir/ipam.
	IPAMDir string
}

// netState is the runtime's side of the containers' networks: the
// namespaces (made at the first use), and who is where, so that every
// bridged container's /etc/hosts names the others.
type netState struct {
	opts NetworkOptions

	mu      sync.Mutex
	net     *containernet.Network
	members map[string]*netMember
}

// netMember is one created container's place.
type netMember struct {
	mode     string     // NetworkBridge, NetworkNone, NetworkHost, or "container"
	owner    string     // the container whose namespace it is in (itself, unless sharing)
	netns    string     // the namespace's path; "" for the machine's
	addr     netip.Addr // on the bridge; invalid when not there
	hostname string
	hosts    string // its /etc/hosts on the host
}

// newNetState fills in the defaults of opts.
func newNetState(opts NetworkOptions, stateDir, dataDir string) *netState {
	if opts.NetnsDir == "" {
		opts.NetnsDir = filepath.Join(filepath.Dir(stateDir), "netns")
	}
	if opts.IPAMDir == "" {
		opts.IPAMDir = filepath.Join(dataDir, "ipam")
	}
	return &netState{opts: opts, members: map[string]*netMember{}}
}

// network returns the container network manager, making it at the first
// call (it mounts the namespace directory); a failure is tried again at
// the next call.
func (s *netState) network(r *Runtime) (*containernet.Network, error) {
	if s.net != nil {
		return s.net, nil
	}
	n, err := containernet.New(containernet.Options{
		Bridge: s.opts.Bridge, Subnet: s.opts.Subnet,
		NetnsDir: s.opts.NetnsDir, IPAMDir: s.opts.IPAMDir, Log: r.log,
	})
	if err != nil {
		return nil, err
	}
	s.net = n
	return n, nil
}

// attachNetwork gives a container being created its network, before its
// spec is converted and its files written: a named namespace on the bridge
// (bridge, the default) or with only a loopback (none), joined by path so
// that it is up before the container's first process runs; the namespace
// of another container (container:NAME, whose host name it then takes); or
// the machine's (host).
func (r *Runtime) attachNetwork(m *manifest.Container, p *plan, l *layout) error {
	s := r.net
	s.mu.Lock()
	defer s.mu.Unlock()
	name := m.Name
	mem := &netMember{mode: m.NetworkMode, owner: name, hostname: p.hostname, hosts: l.hosts}
	switch mode := m.NetworkMode; {
	case mode == NetworkHost:
	case mode == NetworkNone:
		n, err := s.network(r)
		if err != nil {
			return err
		}
		ep, err := n.Isolated(name)
		if err != nil {
			return err
		}
		mem.netns = ep.Netns
	case mode == "" || mode == NetworkBridge:
		mem.mode = NetworkBridge
		ports, err := publishedPorts(m.Ports)
		if err != nil {
			return err
		}
		n, err := s.network(r)
		if err != nil {
			return err
		}
		ep, err := n.Attach(name, ports)
		if err != nil {
			return err
		}
		mem.netns, mem.addr = ep.Netns, ep.Addr
	default:
		target := m.NetworkContainer()
		t, ok := s.members[target]
		if target == "" || !ok {
			return fmt.Errorf("network_mode %s: container %s does not exist (it must be created first)", mode, target)
		}
		mem.mode, mem.owner, mem.netns, mem.addr = "container", t.owner, t.netns, t.addr
		shareHostname(p, t.hostname)
		mem.hostname = t.hostname
	}
	if mem.netns != "" {
		setNetns(p.spec, mem.netns)
	}
	s.members[name] = mem
	return nil
}

// publishedPorts converts the manifest's ports; a port without a host port
// documents the container and publishes nothing.
func publishedPorts(ps []manifest.Port) ([]portmap.Port, error) {
	var out []portmap.Port
	for i, mp := range ps {
		if mp.HostPort == 0 {
			continue
		}
		p, err := portmap.Parse(mp.HostIP, mp.HostPort, mp.ContainerPort, mp.Protocol)
		if err != nil {
			return nil, fmt.Errorf("ports[%d]: %w", i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// setNetns makes the spec join the network namespace at path.
func setNetns(spec *specs.Spec, path string) {
	ns := &spec.Linux.Namespaces
	i := slices.IndexFunc(*ns, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
	if i < 0 {
		*ns = append(*ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
		return
	}
	(*ns)[i].Path = path
}

// shareHostname gives a container that shares another's network that
// container's host name (as Docker does).
func shareHostname(p *plan, hostname string) {
	if hostname == p.hostname {
		return
	}
	env := p.spec.Process.Env
	if i := slices.Index(env, "HOSTNAME="+p.hostname); i >= 0 {
		env[i] = "HOSTNAME=" + hostname
	}
	p.hostname, p.spec.Hostname = hostname, hostname
}

// detachNetwork removes what attachNetwork made for a container that is
// destroyed (its address stays for the next Create), and updates the
// others' /etc/hosts.
func (r *Runtime) detachNetwork(name string) error {
	s := r.net
	s.mu.Lock()
	defer s.mu.Unlock()
	mem, ok := s.members[name]
	if !ok {
		return nil
	}
	delete(s.members, name)
	var err error
	if (mem.mode == NetworkBridge || mem.mode == NetworkNone) && s.net != nil {
		err = s.net.Detach(name)
	}
	if mem.addr.IsValid() {
		r.refreshHostsLocked()
	}
	return err
}

// releaseNetwork gives back a removed container's address.
func (r *Runtime) releaseNetwork(name string) error {
	s := r.net
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.network(r)
	if err != nil {
		return err
	}
	return n.Release(name)
}

// cleanupNetwork removes what an earlier run left (the nftables table,
// veths and namespace files of containers not in live), and the addresses
// of containers whose files are gone (removed while photon-init was not
// running).
func (r *Runtime) cleanupNetwork(live map[string]bool) error {
	s := r.net
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.network(r)
	if err != nil {
		return fmt.Errorf("cleanup the network: %w", err)
	}
	errs := []error{n.Cleanup(func(name string) bool { return live[name] })}
	addrs, err := n.Addresses()
	errs = append(errs, err)
	for name := range addrs {
		if _, err := os.Stat(r.layout(name).dir); errors.Is(err, os.ErrNotExist) && !live[name] {
			errs = append(errs, n.Release(name))
		}
	}
	return errors.Join(errs...)
}

// refreshHosts rewrites every bridged container's /etc/hosts.
func (r *Runtime) refreshHosts() {
	r.net.mu.Lock()
	defer r.net.mu.Unlock()
	r.refreshHostsLocked()
}

// refreshHostsLocked rewrites the /etc/hosts of every container on the
// bridge (or sharing the namespace of one), in place: the file is
// bind-mounted into the container, and a new inode would not be seen.
func (r *Runtime) refreshHostsLocked() {
	for name, mem := range r.net.members {
		if !mem.addr.IsValid() {
			continue
		}
		if err := writeInPlace(mem.hosts, []byte(r.net.hostsLocked(name))); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("container: update /etc/hosts", "container", name, "err", err)
		}
	}
}

// hostsLocked is the /etc/hosts of member self: the loopback names, its
// own address with its host name and the names of the containers in its
// namespace, then every other namespace on the bridge with the names of
// the containers in it (the owner first) and the owner's host name.
func (s *netState) hostsLocked(self string) string {
	me := s.members[self]
	addrs := map[string]netip.Addr{} // owner -> address
	owners := map[string][]string{}  // owner -> its name and host name
	sharers := map[string][]string{} // owner -> the others in its namespace
	for name, m := range s.members {
		if !m.addr.IsValid() {
			continue
		}
		addrs[m.owner] = m.addr
		if name == m.owner {
			owners[name] = []string{name, m.hostname}
		} else {
			sharers[m.owner] = append(sharers[m.owner], name)
		}
	}
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(hostsFile(me.hostname), "127.0.1.1\t"+me.hostname+"\n"))
	line := func(owner string, first ...string) {
		slices.Sort(sharers[owner])
		all := slices.Concat(first, owners[owner], sharers[owner])
		fmt.Fprintf(&b, "%s\t%s\n", addrs[owner], strings.Join(dedupe(all), " "))
	}
	line(me.owner, me.hostname, self)
	for _, o := range slices.Sorted(maps.Keys(addrs)) {
		if o != me.owner {
			line(o)
		}
	}
	return b.String()
}

// dedupe drops empty and repeated names, keeping the first of each.
func dedupe(names []string) []string {
	var out []string
	for _, n := range names {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// writeInPlace rewrites path keeping its inode: the new content over the
// old, then the file cut to its length (so that a reader never finds it
// empty). A missing file is an error matching os.ErrNotExist.
func writeInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteAt(data, 0)
	if err := errors.Join(werr, f.Truncate(int64(len(data))), f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// NetworkInfo is where a created container is on the network, for people
// and the control socket.
type NetworkInfo struct {
	// Mode is bridge, none, host or container:NAME.
	Mode string
	// Addresses are its addresses in CIDR form (bridge only).
	Addresses []netip.Prefix
	// Ports are its published ports.
	Ports []portmap.Port
}

// NetworkInfo returns where the created container name is on the network;
// false when the runtime has not created it.
func (r *Runtime) NetworkInfo(name string) (NetworkInfo, bool) {
	s := r.net
	s.mu.Lock()
	defer s.mu.Unlock()
	mb, ok := s.members[name]
	if !ok {
		return NetworkInfo{}, false
	}
	info := NetworkInfo{Mode: mb.mode}
	if mb.mode == "container" {
		info.Mode = "container:" + mb.owner
	}
	if s.net != nil {
		if ep, ok := s.net.Endpoint(mb.owner); ok {
			if ep.Addr.IsValid() {
				info.Addresses = append(info.Addresses, netip.PrefixFrom(ep.Addr, s.net.Subnet().Bits()))
			}
			if mb.owner == name {
				info.Ports = append(info.Ports, ep.Ports...)
			}
		}
	}
	return info, true
}

// Close releases what the runtime mounted for the containers' networks
// (the shared mount of the network namespace directory), once every
// container is destroyed: "photon-init run" on a host leaves nothing
// mounted behind. Addresses stay reserved on disk for the next run.
func (r *Runtime) Close() error {
	s := r.net
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.net == nil {
		return nil
	}
	if err := unix.Unmount(s.opts.NetnsDir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", s.opts.NetnsDir, err)
	}
	s.net = nil
	return nil
}
