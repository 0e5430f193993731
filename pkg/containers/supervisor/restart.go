package supervisor

import (
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// restarter applies a container's restart policy and its backoff over the
// runs of one life.
type restarter struct {
	policy   string // manifest.Restart*
	max      int    // on-failure:N; 0 = no limit
	initial  time.Duration
	maxDelay time.Duration
	stable   time.Duration
	fails    int           // failures in a row
	delay    time.Duration // the last delay; 0 = none since the last stable run
}

func newRestarter(restart string, opts Options) *restarter {
	policy, max, err := manifest.ParseRestart(restart)
	if err != nil { // validation rejects those
		policy = manifest.RestartNo
	}
	return &restarter{policy: policy, max: max, initial: opts.RestartDelay, maxDelay: opts.MaxRestartDelay, stable: opts.StableRun}
}

// decision is what to do after a run.
type decision struct {
	restart bool
	delay   time.Duration // before the restart
	state   State         // the final state when not restarting
	reason  string        // the final state's reason, or what the backoff shows after "next start in D, "
}

// failed reports whether a run counts as a failure.
func (r runResult) failed() bool {
	return r.err != nil || r.cause != "" || r.exit == nil || r.exit.Code != 0
}

// describe says how a run ended: "create: boom", "exit 1",
// "unhealthy (health check exit 1), exit 143 (SIGTERM)".
func (r runResult) describe() string {
	if r.err != nil {
		return firstLine(r.err)
	}
	s := "exit status unknown"
	if r.exit != nil {
		s = r.exit.String()
	}
	if r.cause != "" {
		s = r.cause + ", " + s
	}
	return s
}

// decide applies the policy to a run that ended by itself (or was ended
// as a failure).
func (p *restarter) decide(r runResult) decision {
	if r.ran >= p.stable {
		p.fails, p.delay = 0, 0
	}
	failed := r.failed()
	what := r.describe()
	switch p.policy {
	case manifest.RestartAlways, manifest.RestartUnlessStopped:
	case manifest.RestartOnFailure:
		if !failed {
			return decision{state: StateExited, reason: what}
		}
		p.fails++
		if p.max > 0 && p.fails > p.max {
			return decision{state: StateFailed, reason: fmt.Sprintf("%s; gave up after %d restarts (on-failure:%d)", what, p.max, p.max)}
		}
	default:
		if r.err != nil {
			return decision{state: StateFailed, reason: what}
		}
		return decision{state: StateExited, reason: what}
	}
	if p.delay == 0 {
		p.delay = p.initial
	} else {
		p.delay = min(2*p.delay, p.maxDelay)
	}
	last := "last " + what
	if r.err != nil {
		last = "last error: " + what
	}
	return decision{restart: true, delay: p.delay, reason: last}
}

// restartsFailure reports whether a failure now, after a run of ran,
// would be restarted: then an unhealthy container is stopped to be
// restarted.
func (p *restarter) restartsFailure(ran time.Duration) bool {
	switch p.policy {
	case manifest.RestartAlways, manifest.RestartUnlessStopped:
		return true
	case manifest.RestartOnFailure:
		fails := p.fails
		if ran >= p.stable {
			fails = 0
		}
		return p.max == 0 || fails < p.max
	}
	return false
}

// alarm is a timer that may be unset (its channel is then nil, which a
// select never receives from).
type alarm struct{ t clockwork.Timer }

// set (re)arms the alarm to fire after d.
func (a *alarm) set(c clockwork.Clock, d time.Duration) {
	a.stop()
	a.t = c.NewTimer(d)
}

// stop disarms the alarm.
func (a *alarm) stop() {
	if a.t != nil {
		a.t.Stop()
		a.t = nil
	}
}

// fired disarms the alarm after its channel has been received from.
func (a *alarm) fired() { a.t = nil }

// C is the alarm's channel, nil when unset.
func (a *alarm) C() <-chan time.Time {
	if a.t == nil {
		return nil
	}
	return a.t.Chan()
}
