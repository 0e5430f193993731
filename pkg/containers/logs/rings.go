package logs

import "sync"

// Rings holds the ring of every container by name, for the control API;
// a container's ring outlives its runs.
type Rings struct {
	opts RingOptions

	mu    sync.Mutex
	rings map[string]*Ring
}

// NewRings returns an empty set of rings made with opts.
func NewRings(opts RingOptions) *Rings {
	return &Rings{opts: opts, rings: map[string]*Ring{}}
}

// Get returns the ring of the container called name, creating it.
func (rs *Rings) Get(name string) *Ring {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r, ok := rs.rings[name]
	if !ok {
		r = NewRing(name, rs.opts)
		rs.rings[name] = r
	}
	return r
}

// Lookup returns the ring of the container called name, if it has one.
func (rs *Rings) Lookup(name string) (*Ring, bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r, ok := rs.rings[name]
	return r, ok
}

// Remove closes and forgets the ring of the container called name (the
// container was removed); its followers end with ErrClosed.
func (rs *Rings) Remove(name string) {
	rs.mu.Lock()
	r, ok := rs.rings[name]
	delete(rs.rings, name)
	rs.mu.Unlock()
	if ok {
		r.Close()
	}
}

// Destinations returns the destinations a run of the container called
// name writes to besides its file and console: its ring, which the Sink
// does not close. It fits container.Options.LogDestinations.
func (rs *Rings) Destinations(name string) []Destination {
	return []Destination{rs.Get(name).Destination()}
}
