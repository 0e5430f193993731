package logs

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Defaults of RingOptions.
const (
	// DefaultRingBytes bounds a ring's lines' text (plus EntryOverhead a
	// line).
	DefaultRingBytes = 1 << 20
	// DefaultRingLines bounds a ring's number of lines.
	DefaultRingLines = 16 << 10
	// DefaultFollowBytes bounds what waits for one follower.
	DefaultFollowBytes = 256 << 10
	// DefaultFollowLines bounds the lines waiting for one follower.
	DefaultFollowLines = 4096
)

// EntryOverhead is what a line costs a ring beyond its text, in its byte
// bound.
const EntryOverhead = 64

// slabSize is the largest size of the blocks a ring copies line texts
// into; a line longer than slabSize/4 gets its own allocation. A ring's
// first block is minSlabSize and each next one twice the last, so a
// container that logs a few lines does not hold a whole slabSize block.
const (
	slabSize    = 32 << 10
	minSlabSize = 512
)

// ErrClosed is returned by Follower.Next once its ring is closed and every
// line was read.
var ErrClosed = errors.New("logs: ring closed")

// Entry is a line kept by a Ring or read from a log file.
type Entry struct {
	// Line is the line; its Text belongs to the Entry, is shared with
	// other readers and must not be modified.
	Line
	// Seq numbers the ring's lines from 1, without gaps; 0 for a line read
	// from a log file.
	Seq uint64
}

// RingOptions configure the rings of Rings.
type RingOptions struct {
	// Dir is the directory of the containers' log files, for lines older
	// than a ring holds (Ring.Stream); "" reads only the ring.
	Dir string
	// MaxBytes bounds the text a ring keeps (each line counting
	// EntryOverhead more); 0 means DefaultRingBytes.
	MaxBytes int
	// MaxLines bounds the lines a ring keeps; 0 means DefaultRingLines.
	MaxLines int
	// FollowBytes and FollowLines bound what may wait for one follower
	// (text and EntryOverhead a line, and lines); more is dropped for that
	// follower and counted. 0 means DefaultFollowBytes and
	// DefaultFollowLines.
	FollowBytes, FollowLines int
}

func (o RingOptions) withDefaults() RingOptions {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultRingBytes
	}
	if o.MaxLines <= 0 {
		o.MaxLines = DefaultRingLines
	}
	if o.FollowBytes <= 0 {
		o.FollowBytes = DefaultFollowBytes
	}
	if o.FollowLines <= 0 {
		o.FollowLines = DefaultFollowLines
	}
	return o
}

// Ring keeps a container's last lines in memory, across the container's
// runs, for the control API: Tail, Since, Follow, TailFollow, and Stream,
// which also reads the log files for lines the ring no longer holds. It is
// a Destination (see Destination for one that outlives a Sink). Writing
// never waits for a reader: a follower that falls behind loses lines and
// is told how many.
type Ring struct {
	name string
	opts RingOptions

	mu        sync.Mutex
	buf       []Entry // circular, len(buf) = capacity (grows to MaxLines)
	head, n   int     // oldest entry, number of entries
	bytes     int     // cost of the entries
	seq       uint64  // Seq of the last line written
	slab      []byte
	batch     []Entry // reused by Write
	followers map[*Follower]struct{}
	closed    bool
}

// NewRing returns an empty ring for the container called name.
func NewRing(name string, opts RingOptions) *Ring {
	return &Ring{name: name, opts: opts.withDefaults(), followers: map[*Follower]struct{}{}}
}

// Name is the container's name.
func (r *Ring) Name() string { return r.name }

// Destination returns the ring as a Destination whose Close does nothing,
// for the Sinks of the container's successive runs.
func (r *Ring) Destination() Destination { return ringDest{r} }

type ringDest struct{ r *Ring }

func (d ringDest) Write(lines []Line) error { return d.r.Write(lines) }
func (d ringDest) Close() error             { return nil }

// Write appends lines to the ring (dropping the oldest beyond its bounds)
// and to every follower's queue. It never blocks on a reader.
func (r *Ring) Write(lines []Line) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	batch := r.batch[:0]
	for _, l := range lines {
		l.Text = r.copyText(l.Text)
		r.seq++
		e := Entry{Line: l, Seq: r.seq}
		r.push(e)
		batch = append(batch, e)
	}
	for f := range r.followers {
		f.push(batch)
	}
	clear(batch) // let go of the texts: the reused buffer must not keep them
	r.batch = batch[:0]
	return nil
}

// Close ends every follower (after the lines they have queued) and makes
// the ring drop further lines. What it holds can still be read.
func (r *Ring) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for f := range r.followers {
		f.end(ErrClosed)
	}
	clear(r.followers)
	return nil
}

// Len returns the number of lines in the ring and the Seq of the last
// line ever written.
func (r *Ring) Len() (lines int, lastSeq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, r.seq
}

// copyText copies t into the ring's slab. The copy is never written again:
// readers may keep it.
func (r *Ring) copyText(t []byte) []byte {
	if len(t) > slabSize/4 {
		return append([]byte(nil), t...)
	}
	if cap(r.slab)-len(r.slab) < len(t) {
		r.slab = make([]byte, 0, nextSlabSize(cap(r.slab), len(t)))
	}
	off := len(r.slab)
	r.slab = append(r.slab, t...)
	return r.slab[off:len(r.slab):len(r.slab)]
}

// nextSlabSize is the size of the block after one of size last, for a
// text of n bytes (n <= slabSize/4): twice the last, from minSlabSize up to
// slabSize, and at least n.
func nextSlabSize(last, n int) int {
	return max(min(max(2*last, minSlabSize), slabSize), n)
}

func entryCost(e *Entry) int { return len(e.Text) + EntryOverhead }

// push appends e, dropping the oldest entries beyond the bounds.
func (r *Ring) push(e Entry) {
	cost := entryCost(&e)
	for r.n > 0 && (r.n >= r.opts.MaxLines || r.bytes+cost > r.opts.MaxBytes) {
		old := &r.buf[r.head]
		r.bytes -= entryCost(old)
		*old = Entry{}
		r.head = (r.head + 1) % len(r.buf)
		r.n--
	}
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.n)%len(r.buf)] = e
	r.n++
	r.bytes += cost
}

// minRingLines is the capacity of a ring's first buffer.
const minRingLines = 16

// grow doubles the buffer, from minRingLines up to MaxLines.
func (r *Ring) grow() {
	size := max(minRingLines, 2*len(r.buf))
	size = min(size, r.opts.MaxLines)
	nb := make([]Entry, size)
	r.copyOut(nb, 0, r.n)
	r.buf, r.head = nb, 0
}

// at returns the i-th oldest entry.
func (r *Ring) at(i int) *Entry { return &r.buf[(r.head+i)%len(r.buf)] }

// copyOut copies entries [from, to) (oldest = 0) into dst.
func (r *Ring) copyOut(dst []Entry, from, to int) {
	for i := from; i < to; i++ {
		dst[i-from] = *r.at(i)
	}
}

// tailLocked returns the last n entries (all for n < 0) with Time not
// before since (any time when since is zero).
func (r *Ring) tailLocked(n int, since time.Time) []Entry {
	from := 0
	if !since.IsZero() {
		// Lines arrive in time order but a clock may step back: keep
		// the lines from the first one at or after since.
		for from < r.n && r.at(from).Time.Before(since) {
			from++
		}
	}
	if n >= 0 && r.n-from > n {
		from = r.n - n
	}
	out := make([]Entry, r.n-from)
	r.copyOut(out, from, r.n)
	return out
}

// Tail returns the last n lines the ring holds (every line for n < 0),
// oldest first.
func (r *Ring) Tail(n int) []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tailLocked(n, time.Time{})
}

// Since returns the lines the ring holds from the first one received at
// or after t (every line for the zero t), oldest first.
func (r *Ring) Since(t time.Time) []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tailLocked(-1, t)
}

// Follow returns a follower that gets every line written from now on,
// until ctx ends or the ring closes.
func (r *Ring) Follow(ctx context.Context) *Follower {
	_, f := r.TailFollow(ctx, 0)
	return f
}

// TailFollow returns the last n lines (every line for n < 0) and a
// follower that gets every line written after them: no line is missing
// between the two or in both.
func (r *Ring) TailFollow(ctx context.Context, n int) ([]Entry, *Follower) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tailLocked(n, time.Time{}), r.followLocked(ctx)
}

// followLocked registers a follower; r.mu is held.
func (r *Ring) followLocked(ctx context.Context) *Follower {
	f := &Follower{ring: r, wake: make(chan struct{}, 1), maxBytes: r.opts.FollowBytes, maxLines: r.opts.FollowLines}
	if r.closed {
		f.end(ErrClosed)
		return f
	}
	r.followers[f] = struct{}{}
	f.stopCtx = context.AfterFunc(ctx, func() { f.stop(ctx.Err()) })
	return f
}

// Follower receives the lines written to a Ring after it was created.
// Lines that arrive while its queue is full are dropped for it alone and
// counted.
type Follower struct {
	ring               *Ring
	wake               chan struct{} // a token when something changed
	maxBytes, maxLines int
	stopCtx            func() bool

	mu      sync.Mutex
	queue   []queued
	bytes   int
	dropped uint64 // dropped after the last queued entry
	missed  uint64 // dropped in all
	err     error  // why the follower ended; nil while it runs
}

type queued struct {
	e   Entry
	gap uint64 // lines dropped just before e
}

// push queues the entries of a batch, or counts those that do not fit as
// dropped. The ring's lock is held.
func (f *Follower) push(batch []Entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range batch {
		cost := entryCost(&batch[i])
		if len(f.queue) >= f.maxLines || (len(f.queue) > 0 && f.bytes+cost > f.maxBytes) {
			f.dropped++
			f.missed++
			continue
		}
		f.queue = append(f.queue, queued{e: batch[i], gap: f.dropped})
		f.dropped = 0
		f.bytes += cost
	}
	f.signal()
}

func (f *Follower) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// end records why the follower ended. The ring's lock is held or the
// follower is not registered.
func (f *Follower) end(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
	f.signal()
}

// stop unregisters the follower.
func (f *Follower) stop(err error) {
	f.ring.mu.Lock()
	delete(f.ring.followers, f)
	f.ring.mu.Unlock()
	f.end(err)
}

// Stop ends the follower: Next returns what is queued, then
// context.Canceled.
func (f *Follower) Stop() {
	if f.stopCtx != nil {
		f.stopCtx()
	}
	f.stop(context.Canceled)
}

// Missed returns how many lines were dropped for this follower in all.
func (f *Follower) Missed() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.missed
}

// Next waits for lines and returns them, oldest first, with the number of
// lines dropped for this follower just before them (which may come with
// no lines when the drops were the last thing that happened). After the
// follower ended (its context, Stop, or the ring closed) it returns what
// is queued, then the reason: the context's error or ErrClosed.
func (f *Follower) Next() (lines []Entry, missed uint64, err error) {
	for {
		f.mu.Lock()
		switch {
		case len(f.queue) > 0:
			missed = f.queue[0].gap
			j := 1
			for j < len(f.queue) && f.queue[j].gap == 0 {
				j++
			}
			lines = make([]Entry, j)
			for i := range lines {
				lines[i] = f.queue[i].e
				f.bytes -= entryCost(&lines[i])
			}
			rest := copy(f.queue, f.queue[j:])
			clear(f.queue[rest:])
			f.queue = f.queue[:rest]
			f.mu.Unlock()
			return lines, missed, nil
		case f.dropped > 0:
			missed, f.dropped = f.dropped, 0
			f.mu.Unlock()
			return nil, missed, nil
		case f.err != nil:
			err = f.err
			f.mu.Unlock()
			return nil, 0, err
		}
		f.mu.Unlock()
		<-f.wake
	}
}
