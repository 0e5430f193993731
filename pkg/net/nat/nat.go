// Package nat keeps photon-init's nftables table (google/nftables, the
// kernel's netlink interface: no nft or iptables binary), which gives the
// containers' bridge network outbound NAT and published ports:
//
//	table ip photon-init {
//	  chain prerouting {            # nat, prerouting, priority dstnat
//	    fib daddr type local jump ports
//	  }
//	  chain output {                # nat, output, priority dstnat
//	    fib daddr type local jump ports
//	  }
//	  chain ports {                 # one rule per published port
//	    [ip daddr HOST_IP] meta l4proto tcp th dport 8080 dnat to 10.88.0.2:80 comment "web"
//	  }
//	  chain postrouting {           # nat, postrouting, priority srcnat
//	    ip saddr 10.88.0.0/16 ip daddr != 10.88.0.0/16 oifname != "photon0" masquerade
//	    oifname "photon0" ct status dnat ip saddr 127.0.0.0/8 masquerade
//	    oifname "photon0" ct status dnat ip saddr 10.88.0.0/16 masquerade
//	  }
//	}
//
// Published ports answer on every local address ("fib daddr type local":
// the machine's own addresses, whatever DHCP gives later, and the bridge's)
// or on the one host address given; connections that only pass through
// the machine to another host are never taken. The output chain does the
// same for connections made by the machine itself, 127.0.0.1 included
// (the bridge has route_localnet, see package bridge); those, and
// connections from containers to a published port of the machine
// (hairpin), are masqueraded to the bridge's address so that the answer
// comes back through the machine.
//
// A port rule carries its owner (the container's name) as its comment,
// so that DelDNAT removes exactly that container's rules. Setup deletes
// and re-creates the whole table in one transaction: whatever an earlier
// run of photon-init left is gone.
package nat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// DefaultTable is the name of photon-init's table (family ip).
const DefaultTable = "photon-init"

// Chain names in the table.
const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPorts       = "ports"
	chainPostrouting = "postrouting"
)

// Config is what the table is built for.
type Config struct {
	// Table is the nftables table's name (DefaultTable when empty).
	Table string
	// Bridge is the containers' bridge.
	Bridge string
	// Subnet is the bridge network (IPv4).
	Subnet netip.Prefix
}

// DNAT is one published port.
type DNAT struct {
	// HostIP is the one local address the port answers on; the zero
	// Addr means every local address.
	HostIP netip.Addr
	// HostPort is the port on the machine.
	HostPort uint16
	// Protocol is "tcp" or "udp".
	Protocol string
	// To is the container's address and port.
	To netip.AddrPort
}

// String describes the mapping: "0.0.0.0:8080/tcp -> 10.88.0.2:80".
func (d DNAT) String() string {
	host := "0.0.0.0"
	if d.HostIP.IsValid() {
		host = d.HostIP.String()
	}
	return fmt.Sprintf("%s:%d/%s -> %s", host, d.HostPort, d.Protocol, d.To)
}

// Table is photon-init's nftables table in the caller's network
// namespace.
type Table struct {
	cfg Config
	mu  sync.Mutex
}

// New returns the table for cfg; nothing is changed before Setup.
func New(cfg Config) (*Table, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.Bridge == "" || len(cfg.Bridge) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("nat: %q is not a bridge name", cfg.Bridge)
	}
	if !cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4() {
		return nil, fmt.Errorf("nat: %s is not an IPv4 subnet", cfg.Subnet)
	}
	cfg.Subnet = cfg.Subnet.Masked()
	return &Table{cfg: cfg}, nil
}

func (t *Table) table() *nftables.Table {
	return &nftables.Table{Name: t.cfg.Table, Family: nftables.TableFamilyIPv4}
}

// Setup (re)creates the table with its chains and masquerade rules,
// dropping every rule it held, in one transaction.
func (t *Table) Setup() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tab := t.table()
	// Adding first makes the delete valid when the table is missing.
	c.AddTable(tab)
	c.DelTable(tab)
	tab = c.AddTable(t.table())
	ports := c.AddChain(&nftables.Chain{Name: chainPorts, Table: tab})
	for _, h := range []struct {
		name string
		hook *nftables.ChainHook
	}{{chainPrerouting, nftables.ChainHookPrerouting}, {chainOutput, nftables.ChainHookOutput}} {
		ch := c.AddChain(&nftables.Chain{
			Name: h.name, Table: tab, Type: nftables.ChainTypeNAT,
			Hooknum: h.hook, Priority: nftables.ChainPriorityNATDest,
		})
		c.AddRule(&nftables.Rule{Table: tab, Chain: ch, Exprs: []expr.Any{
			// fib daddr type local
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: ports.Name},
		}})
	}
	post := c.AddChain(&nftables.Chain{
		Name: chainPostrouting, Table: tab, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	subnet := t.cfg.Subnet
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	rules := [][]expr.Any{
		// Outbound: from the containers to anywhere but the bridge.
		concat(matchPrefix(offSaddr, subnet, true), matchPrefix(offDaddr, subnet, false),
			matchOifname(t.cfg.Bridge, false), masq()),
		// The machine's own connections to 127.0.0.1:PORT.
		concat(matchOifname(t.cfg.Bridge, true), matchDNATed(), matchPrefix(offSaddr, loopback, true), masq()),
		// Hairpin: containers to a published port of the machine.
		concat(matchOifname(t.cfg.Bridge, true), matchDNATed(), matchPrefix(offSaddr, subnet, true), masq()),
	}
	for _, r := range rules {
		c.AddRule(&nftables.Rule{Table: tab, Chain: post, Exprs: r})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: set up table %s: %w", t.cfg.Table, err)
	}
	return nil
}

// AddDNAT adds owner's published ports, all or none.
func (t *Table) AddDNAT(owner string, ds []DNAT) error {
	if len(ds) == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tab := t.table()
	ch := &nftables.Chain{Name: chainPorts, Table: tab}
	for _, d := range ds {
		exprs, err := dnatExprs(d)
		if err != nil {
			return fmt.Errorf("nftables: %s: %w", d, err)
		}
		c.AddRule(&nftables.Rule{
			Table: tab, Chain: ch, Exprs: exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, owner),
		})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: publish ports of %s: %w", owner, err)
	}
	return nil
}

// DelDNAT removes every published port of owner. A missing table is no
// error (nothing is published).
func (t *Table) DelDNAT(owner string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	rules, err := c.GetRules(t.table(), &nftables.Chain{Name: chainPorts, Table: t.table()})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("nftables: list the rules of %s: %w", t.cfg.Table, err)
	}
	n := 0
	for _, r := range rules {
		if o, _ := userdata.GetString(r.UserData, userdata.TypeComment); o == owner {
			if err := c.DelRule(r); err != nil {
				return fmt.Errorf("nftables: %w", err)
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: unpublish ports of %s: %w", owner, err)
	}
	return nil
}

// Owners counts the published-port rules per owner (for inspection and
// tests); a missing table has none.
func (t *Table) Owners() (map[string]int, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	rules, err := c.GetRules(t.table(), &nftables.Chain{Name: chainPorts, Table: t.table()})
	if errors.Is(err, unix.ENOENT) {
		return map[string]int{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	out := map[string]int{}
	for _, r := range rules {
		o, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		out[o]++
	}
	return out, nil
}

// Delete removes the table named name (DefaultTable when empty) with all
// its rules; a missing table is no error.
func Delete(name string) error {
	if name == "" {
		name = DefaultTable
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tab := &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4}
	c.AddTable(tab)
	c.DelTable(tab)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table %s: %w", name, err)
	}
	return nil
}

// Exists reports whether the table named name (DefaultTable when empty)
// exists. A kernel without nf_tables (the module not loaded: a machine
// with no bridged container) has no table.
func Exists(name string) (bool, error) {
	if name == "" {
		name = DefaultTable
	}
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	tabs, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("nftables: list tables: %w", err)
	}
	for _, t := range tabs {
		if t.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// ipsDstNAT is the conntrack status bit IPS_DST_NAT (linux/netfilter/
// nf_conntrack_common.h).
const ipsDstNAT = 1 << 5

// Offsets in the IPv4 header.
const (
	offSaddr = 12
	offDaddr = 16
)

// dnatExprs is one published port's rule.
func dnatExprs(d DNAT) ([]expr.Any, error) {
	var proto byte
	switch d.Protocol {
	case "tcp":
		proto = unix.IPPROTO_TCP
	case "udp":
		proto = unix.IPPROTO_UDP
	default:
		return nil, fmt.Errorf("protocol %q is not tcp or udp", d.Protocol)
	}
	if !d.To.Addr().Is4() || d.To.Port() == 0 || d.HostPort == 0 {
		return nil, errors.New("needs an IPv4 container address and both ports")
	}
	if d.HostIP.IsValid() && !d.HostIP.Is4() {
		return nil, fmt.Errorf("host address %s is not IPv4: the bridge network is IPv4 only", d.HostIP)
	}
	var out []expr.Any
	if d.HostIP.IsValid() {
		out = append(out,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offDaddr, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: d.HostIP.AsSlice()})
	}
	toAddr := d.To.Addr().As4()
	return append(out,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, d.HostPort)},
		&expr.Immediate{Register: 1, Data: toAddr[:]},
		&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, d.To.Port())},
		&expr.NAT{
			Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4,
			RegAddrMin: 1, RegProtoMin: 2, Specified: true,
		},
	), nil
}

// matchPrefix compares the IPv4 address at off (saddr or daddr) with p.
func matchPrefix(off uint32, p netip.Prefix, in bool) []expr.Any {
	op := expr.CmpOpEq
	if !in {
		op = expr.CmpOpNeq
	}
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits()))
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

// matchOifname compares the output interface's name with name.
func matchOifname(name string, eq bool) []expr.Any {
	op := expr.CmpOpEq
	if !eq {
		op = expr.CmpOpNeq
	}
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: b},
	}
}

// matchDNATed is "ct status dnat": the connection's destination was
// rewritten (a published port).
func matchDNATed() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{
			SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
