package supervisor

import (
	"context"
	"testing"
	"time"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

func TestEventRing(t *testing.T) {
	l := newEventLog(3)
	if got := l.list(); len(got) != 0 {
		t.Fatalf("empty ring lists %v", got)
	}
	for i := range 5 {
		l.add(Event{Container: string(rune('a' + i))})
	}
	got := l.list()
	if len(got) != 3 || got[0].Container != "c" || got[2].Container != "e" || got[0].Seq != 3 || got[2].Seq != 5 {
		t.Errorf("ring after 5 events: %+v", got)
	}
}

func TestEventsAndSlowSubscriber(t *testing.T) {
	s, _, clk := newTest(t, Options{EventHistory: 5, SubscriberBuffer: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow := s.Subscribe(ctx) // never read until the end
	s.Start(context.Background(), []*manifest.Container{
		with(ctr("crash", "img", []string{"exit:1"}, nil), func(m *manifest.Container) { m.Restart = "always" }),
	}, nil)
	// Each round is several events: the supervisor must not wait for the
	// subscriber.
	for i := range 4 {
		waitFor(t, s, "crash", "backoff", func(st Status) bool { return st.State == StateBackoff && st.Restarts == i })
		clk.Advance(time.Duration(100<<i) * time.Millisecond)
	}
	waitFor(t, s, "crash", "backoff", func(st Status) bool { return st.State == StateBackoff && st.Restarts == 4 })

	evs := s.Events()
	if len(evs) != 5 {
		t.Fatalf("%d events kept, want 5", len(evs))
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq != evs[i-1].Seq+1 {
			t.Errorf("events out of order: %+v", evs)
		}
	}
	last := evs[len(evs)-1]
	if last.Container != "crash" || last.To != StateBackoff || !last.Time.Equal(clk.Now()) {
		t.Errorf("last event %+v", last)
	}
	if n := s.DroppedEvents(); n != last.Seq-2 {
		t.Errorf("dropped %d events, want %d", n, last.Seq-2)
	}
	first := <-slow
	if second := <-slow; first.Seq != 1 || second.Seq != 2 || first.From != "" || first.To != StateWaiting {
		t.Errorf("the subscriber got %+v and %+v, want the first two events", first, second)
	}
	cancel()
	for range slow { // closed once ctx ends
	}
}

func TestSubscribe(t *testing.T) {
	s, rt, _ := newTest(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs := s.Subscribe(ctx)
	s.Start(context.Background(), []*manifest.Container{ctr("web", "img", nil, nil)}, nil)
	want := []State{StateWaiting, StatePreparing, StatePreparing, StateRunning, StateRunning}
	for i, st := range want {
		if i == 4 {
			rt.latest(t, "web").notes <- Notification{Ready: true}
		}
		select {
		case ev := <-evs:
			if ev.To != st || ev.Container != "web" {
				t.Fatalf("event %d: %+v, want to %s", i, ev, st)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event %d", i)
		}
	}
}

// TestEventRingGrowsWithItsEvents checks that the event ring does not
// preallocate its bound: its capacity follows the events it holds, and
// once full it keeps the latest in order.
func TestEventRingGrowsWithItsEvents(t *testing.T) {
	const size = 1000
	for _, tc := range []struct {
		events     int
		maxCap     int
		firstSeq   uint64
		wantListed int
	}{
		{events: 0, maxCap: 0, wantListed: 0},
		{events: 10, maxCap: minEventRing, firstSeq: 1, wantListed: 10},
		{events: 100, maxCap: 128, firstSeq: 1, wantListed: 100},
		{events: size, maxCap: size, firstSeq: 1, wantListed: size},
		{events: 2500, maxCap: size, firstSeq: 1501, wantListed: size},
	} {
		l := newEventLog(size)
		for range tc.events {
			l.add(Event{Container: "c"})
		}
		if cap(l.ring) > tc.maxCap {
			t.Errorf("%d events: ring capacity %d, want at most %d", tc.events, cap(l.ring), tc.maxCap)
		}
		got := l.list()
		if len(got) != tc.wantListed {
			t.Fatalf("%d events: %d listed, want %d", tc.events, len(got), tc.wantListed)
		}
		for i, ev := range got {
			if ev.Seq != tc.firstSeq+uint64(i) {
				t.Fatalf("%d events: event %d has Seq %d, want %d", tc.events, i, ev.Seq, tc.firstSeq+uint64(i))
			}
		}
	}
}
