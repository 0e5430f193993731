package supervisor

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// TestGoroutinesPerRunningContainer pins what a running container costs
// the supervisor in goroutines: one, its life (which waits for the exit,
// stop and restart requests, probes, notifications and the watchdog in
// one select). It was three: a goroutine watching for a stop request
// during the whole run and one blocked in Instance.Wait.
func TestGoroutinesPerRunningContainer(t *testing.T) {
	const n = 30
	// Settle what other tests of the package may have left running.
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	s, _, _ := newTest(t, Options{})
	var cs []*manifest.Container
	for i := range n {
		cs = append(cs, ctr(fmt.Sprintf("c%02d", i), "img", nil, nil))
	}
	s.Start(context.Background(), cs, nil)
	for _, c := range cs {
		waitState(t, s, c.Name, StateRunning)
	}
	after := runtime.NumGoroutine()
	per := float64(after-before) / n
	t.Logf("%d goroutines for %d running containers (%.2f each)", after-before, n, per)
	// The fake instances have no goroutines; the supervisor itself may
	// have one or two of its own.
	if after-before > n+2 {
		t.Fatalf("%d goroutines for %d running containers (%.2f each), want 1 each", after-before, n, per)
	}
}
