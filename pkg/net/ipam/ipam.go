// Package ipam hands out the IPv4 addresses of one bridge network to
// containers, by container name, and keeps them on disk so that a
// container that is restarted — or re-created after photon-init itself
// restarted — gets the same address again.
//
// One network is one JSON file, DIR/NETWORK.json:
//
//	{"subnet": "10.88.0.0/16", "last": "10.88.0.3",
//	 "addresses": {"db": "10.88.0.2", "web": "10.88.0.3"}}
//
// The network's first address is the gateway (the bridge's own); the
// network and broadcast addresses are never given. A name keeps its
// address until Release. A new name gets the first free address after the
// one handed out last (wrapping around), as CNI's host-local allocator
// does, so that an address just released is not handed out again at once
// (ARP caches and conntrack entries of the old owner may still be about).
//
// Every change is written to a temporary file, synced and renamed over the
// old one (then the directory is synced): a crash leaves the old state or
// the new one, never half a file. A lock file (flock) serialises changes
// between processes; a Pool also serialises its own callers. A file whose
// subnet differs from the pool's (the configuration changed) is started
// afresh; an unreadable one is set aside as NETWORK.json.corrupt.
package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrExhausted is returned when every address of the subnet is taken.
var ErrExhausted = errors.New("no free address left")

// Pool is the address pool of one network.
type Pool struct {
	path, lock string
	subnet     netip.Prefix
	mu         sync.Mutex
}

// state is the file's content.
type state struct {
	Subnet    string                `json:"subnet"`
	Last      netip.Addr            `json:"last,omitzero"`
	Addresses map[string]netip.Addr `json:"addresses"`
}

// Open returns the pool of network (a file name: the bridge's name) in dir
// for subnet, an IPv4 prefix of at most /30. The directory is created.
func Open(dir, network string, subnet netip.Prefix) (*Pool, error) {
	if !subnet.IsValid() || !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return nil, fmt.Errorf("ipam %s: %s is not an IPv4 subnet with room for addresses (at most /30)", network, subnet)
	}
	if network == "" || network != filepath.Base(network) || network[0] == '.' {
		return nil, fmt.Errorf("ipam: %q is not a network name", network)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ipam %s: %w", network, err)
	}
	return &Pool{
		path:   filepath.Join(dir, network+".json"),
		lock:   filepath.Join(dir, "."+network+".lock"),
		subnet: subnet.Masked(),
	}, nil
}

// Subnet is the pool's network.
func (p *Pool) Subnet() netip.Prefix { return p.subnet }

// Gateway is the subnet's first address, which the bridge itself holds.
func (p *Pool) Gateway() netip.Addr { return p.subnet.Addr().Next() }

// Get returns name's address, handing out a new one when name has none.
func (p *Pool) Get(name string) (netip.Addr, error) {
	var out netip.Addr
	err := p.update(func(s *state) (bool, error) {
		if a, ok := s.Addresses[name]; ok {
			out = a
			return false, nil
		}
		a, err := p.next(s)
		if err != nil {
			return false, err
		}
		s.Addresses[name], s.Last, out = a, a, a
		return true, nil
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("ipam: address for %s: %w", name, err)
	}
	return out, nil
}

// Lookup returns name's address without handing out one.
func (p *Pool) Lookup(name string) (netip.Addr, bool, error) {
	all, err := p.All()
	if err != nil {
		return netip.Addr{}, false, err
	}
	a, ok := all[name]
	return a, ok, nil
}

// All returns every name's address.
func (p *Pool) All() (map[string]netip.Addr, error) {
	var out map[string]netip.Addr
	err := p.update(func(s *state) (bool, error) {
		out = make(map[string]netip.Addr, len(s.Addresses))
		for n, a := range s.Addresses {
			out[n] = a
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	return out, nil
}

// Release gives name's address back; releasing a name without one does
// nothing.
func (p *Pool) Release(name string) error {
	err := p.update(func(s *state) (bool, error) {
		if _, ok := s.Addresses[name]; !ok {
			return false, nil
		}
		delete(s.Addresses, name)
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("ipam: release %s: %w", name, err)
	}
	return nil
}

// next finds the first free address after s.Last, wrapping around.
func (p *Pool) next(s *state) (netip.Addr, error) {
	used := make(map[netip.Addr]bool, len(s.Addresses))
	for _, a := range s.Addresses {
		used[a] = true
	}
	first := p.Gateway().Next()
	a := first
	if s.Last.IsValid() && p.usable(s.Last) {
		a = s.Last.Next()
	}
	// The subnet less its network, gateway and broadcast addresses.
	size := 1<<(32-p.subnet.Bits()) - 3
	for range size {
		if !p.usable(a) {
			a = first
		}
		if !used[a] {
			return a, nil
		}
		a = a.Next()
	}
	return netip.Addr{}, fmt.Errorf("%s: %w", p.subnet, ErrExhausted)
}

// usable reports whether a can be handed out: in the subnet, not the
// network, gateway or broadcast address.
func (p *Pool) usable(a netip.Addr) bool {
	if !p.subnet.Contains(a) || a == p.subnet.Addr() || a == p.Gateway() {
		return false
	}
	return p.subnet.Contains(a.Next()) // not the broadcast address
}

// update runs f on the state under both locks and writes the state back
// when f says it changed.
func (p *Pool) update(f func(*state) (bool, error)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	lf, err := os.OpenFile(p.lock, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", p.lock, err)
	}
	defer unix.Flock(int(lf.Fd()), unix.LOCK_UN)
	s, err := p.read()
	if err != nil {
		return err
	}
	changed, err := f(s)
	if err != nil || !changed {
		return err
	}
	return p.write(s)
}

// read loads the file; a missing file, or one for another subnet, is an
// empty state. Addresses outside the subnet are dropped.
func (p *Pool) read() (*state, error) {
	fresh := &state{Subnet: p.subnet.String(), Addresses: map[string]netip.Addr{}}
	b, err := os.ReadFile(p.path)
	if errors.Is(err, os.ErrNotExist) {
		return fresh, nil
	}
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		// Keep the evidence, start afresh: a container must not be
		// refused an address for ever because of a broken file.
		if rerr := os.Rename(p.path, p.path+".corrupt"); rerr != nil {
			return nil, fmt.Errorf("%s is unreadable (%v) and cannot be set aside: %w", p.path, err, rerr)
		}
		return fresh, nil
	}
	if s.Subnet != p.subnet.String() {
		return fresh, nil
	}
	if s.Addresses == nil {
		s.Addresses = map[string]netip.Addr{}
	}
	for n, a := range s.Addresses {
		if !p.usable(a) {
			delete(s.Addresses, n)
		}
	}
	return &s, nil
}

// write replaces the file atomically and durably.
func (p *Pool) write(s *state) error {
	s.Subnet = p.subnet.String()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(p.path, append(b, '\n'), 0o600)
}

// writeFileAtomic writes data to path through a synced temporary file in
// the same directory renamed over path, then syncs the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Chmod(perm), f.Sync(), f.Close()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
