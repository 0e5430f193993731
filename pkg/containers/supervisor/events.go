package supervisor

import (
	"context"
	"fmt"
	"log/slog"
)

// eventLog keeps the latest events in a ring and hands every new one to
// the subscribers without ever waiting for them. Guarded by
// Supervisor.mu.
type eventLog struct {
	ring    []Event // grows as events come, up to size
	size    int     // the most events kept
	next    int     // where the next event goes
	n       int     // events in the ring
	seq     uint64
	subs    map[*subscriber]struct{}
	dropped uint64 // events not delivered to a subscriber that was behind
}

// subscriber is one Subscribe call.
type subscriber struct {
	ch      chan Event
	dropped uint64
}

func newEventLog(size int) eventLog {
	return eventLog{size: max(size, 1), subs: map[*subscriber]struct{}{}}
}

// minEventRing is the capacity of the ring's first allocation.
const minEventRing = 32

// add numbers ev, keeps it, and offers it to every subscriber.
func (l *eventLog) add(ev Event) Event {
	l.seq++
	ev.Seq = l.seq
	if len(l.ring) < l.size { // not full yet: l.next == len(l.ring)
		if len(l.ring) == cap(l.ring) {
			grown := make([]Event, len(l.ring), min(max(2*cap(l.ring), minEventRing), l.size))
			copy(grown, l.ring)
			l.ring = grown
		}
		l.ring = append(l.ring, ev)
	} else {
		l.ring[l.next] = ev
	}
	l.next = (l.next + 1) % l.size
	l.n = min(l.n+1, l.size)
	for sub := range l.subs {
		select {
		case sub.ch <- ev:
		default:
			sub.dropped++
			l.dropped++
		}
	}
	return ev
}

// list returns the kept events, oldest first.
func (l *eventLog) list() []Event {
	out := make([]Event, 0, l.n)
	if l.n == 0 {
		return out
	}
	start := (l.next - l.n + len(l.ring)) % len(l.ring)
	for i := range l.n {
		out = append(out, l.ring[(start+i)%len(l.ring)])
	}
	return out
}

// emitLocked records an event and logs it.
func (s *Supervisor) emitLocked(name string, from, to State, reason string) {
	ev := s.events.add(Event{Time: s.clock.Now(), Container: name, From: from, To: to, Reason: reason})
	level := slog.LevelDebug
	switch to {
	case StateRunning, StateExited, StateStopped, StateBackoff, StateRemoved:
		level = slog.LevelInfo
	case StateFailed:
		level = slog.LevelError
	}
	msg := fmt.Sprintf("container %s: %s", name, to)
	if reason != "" {
		msg += " (" + reason + ")"
	}
	s.log.Log(context.Background(), level, msg)
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(ev)
	}
}

// Events returns the latest events (Options.EventHistory of them), oldest
// first.
func (s *Supervisor) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events.list()
}

// Subscribe returns a channel that receives every event from now on until
// ctx ends; then it is closed. A subscriber that falls more than
// Options.SubscriberBuffer events behind loses the events that do not fit
// (counted by DroppedEvents): the supervisor never waits for a
// subscriber. Events' Seq shows gaps, and lets a subscriber that also
// reads Events skip those it has.
func (s *Supervisor) Subscribe(ctx context.Context) <-chan Event {
	sub := &subscriber{ch: make(chan Event, s.opts.SubscriberBuffer)}
	s.mu.Lock()
	s.events.subs[sub] = struct{}{}
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.events.subs, sub)
		if sub.dropped > 0 {
			s.log.Warn(fmt.Sprintf("containers: an event subscriber missed %d events", sub.dropped))
		}
		close(sub.ch)
	})
	return sub.ch
}

// DroppedEvents counts the events that subscribers missed because they
// were behind.
func (s *Supervisor) DroppedEvents() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events.dropped
}
