package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// Docker's health check defaults.
const (
	defaultHealthInterval      = 30 * time.Second
	defaultHealthTimeout       = 30 * time.Second
	defaultHealthStartInterval = 5 * time.Second
	defaultHealthRetries       = 3
)

// maxProbeOutput bounds the probe output kept (Docker keeps 4 KiB too).
const maxProbeOutput = 4096

// healthConfig is a container's effective health check.
type healthConfig struct {
	argv          []string
	interval      time.Duration
	timeout       time.Duration
	startPeriod   time.Duration
	startInterval time.Duration
	retries       int
}

// healthConfigFor combines the manifest's healthcheck with the image's
// HEALTHCHECK as Docker does: each field the manifest sets overrides the
// image's, unset ones take the image's, then Docker's defaults. disable:
// true or a test of ["NONE"] turns the check off; so does having no test.
// A nil config means no health check; the error says why an image's test
// cannot be used (the manifest's are validated when loaded).
func healthConfigFor(m *manifest.Healthcheck, img *image.Healthcheck) (*healthConfig, error) {
	var mh manifest.Healthcheck
	if m != nil {
		mh = *m
	}
	var ih image.Healthcheck
	if img != nil {
		ih = *img
	}
	if mh.Disable {
		return nil, nil
	}
	test := mh.Test
	if len(test) == 0 {
		test = ih.Test
	}
	if len(test) == 0 || test[0] == "NONE" {
		return nil, nil
	}
	var argv []string
	switch {
	case test[0] == "CMD" && len(test) > 1:
		argv = append([]string(nil), test[1:]...)
	case test[0] == "CMD-SHELL" && len(test) > 1:
		// Docker joins the words of a CMD-SHELL test.
		argv = []string{"/bin/sh", "-c", strings.Join(test[1:], " ")}
	default:
		return nil, fmt.Errorf("health check test %q: expected CMD and a program, CMD-SHELL and a command, or NONE", test)
	}
	pick := func(a, b, def time.Duration) time.Duration {
		switch {
		case a > 0:
			return a
		case b > 0:
			return b
		}
		return def
	}
	retries := defaultHealthRetries
	switch {
	case mh.Retries > 0:
		retries = mh.Retries
	case ih.Retries > 0:
		retries = ih.Retries
	}
	return &healthConfig{
		argv:          argv,
		interval:      pick(mh.Interval, ih.Interval, defaultHealthInterval),
		timeout:       pick(mh.Timeout, ih.Timeout, defaultHealthTimeout),
		startPeriod:   pick(mh.StartPeriod, ih.StartPeriod, 0),
		startInterval: pick(mh.StartInterval, ih.StartInterval, defaultHealthStartInterval),
		retries:       retries,
	}, nil
}

// healthState follows one run's health, by Docker's rules: the status is
// starting until the first successful probe; failures during the start
// period do not count while starting; `retries` counted failures in a row
// make it unhealthy; a success makes it healthy again. Probes run every
// start_interval while starting within the start period, else every
// interval.
type healthState struct {
	cfg     *healthConfig
	started time.Time
	h       Health
}

func newHealthState(cfg *healthConfig, started time.Time) *healthState {
	return &healthState{cfg: cfg, started: started, h: Health{Status: HealthStarting}}
}

// nextDelay is the wait before the next probe, from now.
func (hs *healthState) nextDelay(now time.Time) time.Duration {
	if hs.h.Status == HealthStarting && now.Sub(hs.started) < hs.cfg.startPeriod {
		return hs.cfg.startInterval
	}
	return hs.cfg.interval
}

// record applies a probe's result and reports whether the status changed.
func (hs *healthState) record(p probeResult) bool {
	old := hs.h.Status
	hs.h.LastProbe = p.start
	hs.h.LastOutput = p.output()
	hs.h.LastExitCode = p.exitCode()
	switch {
	case p.ok():
		hs.h.FailingStreak = 0
		hs.h.Status = HealthHealthy
	case hs.h.Status == HealthStarting && p.start.Sub(hs.started) < hs.cfg.startPeriod:
		// Failures in the start period do not count.
	default:
		hs.h.FailingStreak++
		if hs.h.FailingStreak >= hs.cfg.retries {
			hs.h.Status = HealthUnhealthy
		}
	}
	return hs.h.Status != old
}

// reason is the state's reason after a change of health.
func (hs *healthState) reason(p probeResult) string {
	if hs.h.Status == HealthUnhealthy {
		return fmt.Sprintf("unhealthy after %d failed health checks: %s", hs.h.FailingStreak, p.summary())
	}
	return string(hs.h.Status)
}

// snapshot copies the health for Status; nil without a health check.
func (hs *healthState) snapshot() *Health {
	if hs == nil {
		return nil
	}
	h := hs.h
	return &h
}

// probeResult is one health probe's outcome.
type probeResult struct {
	start   time.Time
	code    int
	out     []byte
	err     error
	timeout time.Duration
}

func (p probeResult) ok() bool { return p.err == nil && p.code == 0 }

func (p probeResult) exitCode() int {
	if p.err != nil {
		return -1
	}
	return p.code
}

// output is what Health.LastOutput shows.
func (p probeResult) output() string {
	switch {
	case errors.Is(p.err, context.DeadlineExceeded):
		return fmt.Sprintf("health check exceeded its timeout (%s)", p.timeout)
	case p.err != nil:
		return "health check could not run: " + p.err.Error()
	}
	return bounded(string(p.out), maxProbeOutput)
}

// summary describes the probe in one short line, for reasons.
func (p probeResult) summary() string {
	if p.err != nil {
		line, _, _ := strings.Cut(p.output(), "\n")
		return bounded(line, 200)
	}
	s := fmt.Sprintf("health check exit %d", p.code)
	if line, _, _ := strings.Cut(strings.TrimSpace(string(p.out)), "\n"); line != "" {
		s += ": " + bounded(line, 200)
	}
	return s
}

// runProbe runs one health check in its own goroutine, sending the result
// to out (which has room for it).
func (s *Supervisor) runProbe(ctx context.Context, name string, inst Instance, hc *healthConfig, out chan<- probeResult) {
	r := probeResult{start: s.clock.Now(), timeout: hc.timeout}
	safe.Go(s.log, "container "+name+" health check", func() {
		if err := safe.Call("health check of "+name, func() error {
			r.code, r.out, r.err = inst.Exec(ctx, hc.argv, hc.timeout)
			return nil
		}); err != nil {
			r.err = err
		}
		out <- r
	})
}

// bounded cuts s to at most n bytes, on a rune boundary, and makes it
// valid UTF-8.
func bounded(s string, n int) string {
	if len(s) > n {
		cut := n
		for cut > 0 && cut < len(s) && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
