package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Fixed limits of the HTTP transport.
const (
	dialTimeout           = 30 * time.Second
	tlsHandshakeTimeout   = 15 * time.Second
	responseHeaderTimeout = 60 * time.Second
	idleConnTimeout       = 90 * time.Second
)

// insecureHosts is the list of registries reached over plain HTTP.
type insecureHosts struct {
	hostPorts []string // "host:port", lower case: that port
	hosts     []string // "host", lower case: any port
}

// parseInsecure reads Options.Insecure: "host" or "host:port" ("[::1]:5000"
// for IPv6).
func parseInsecure(list []string) (insecureHosts, error) {
	var ih insecureHosts
	for _, s := range list {
		e := strings.ToLower(strings.TrimSpace(s))
		if host, port, err := net.SplitHostPort(e); err == nil {
			if n, err := strconv.Atoi(port); host == "" || err != nil || n < 1 || n > 65535 {
				return ih, fmt.Errorf("insecure registry %q: want host or host:port", s)
			}
			ih.hostPorts = append(ih.hostPorts, net.JoinHostPort(host, port))
			continue
		}
		e = strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")
		if e == "" || strings.ContainsAny(e, "/@ \t") {
			return ih, fmt.Errorf("insecure registry %q: want host or host:port", s)
		}
		ih.hosts = append(ih.hosts, e)
	}
	return ih, nil
}

// allows reports whether plain HTTP may be used to hostport (a URL's
// Host: "host", "host:port", "[v6]:port").
func (ih insecureHosts) allows(hostport string) bool {
	hostport = strings.ToLower(hostport)
	host := strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return slices.Contains(ih.hostPorts, hostport) || slices.Contains(ih.hosts, host)
}

// httpsOnly refuses plain-HTTP requests to hosts not listed as insecure.
type httpsOnly struct {
	insecure insecureHosts
	next     http.RoundTripper
}

// errPlainHTTP is the error of a refused plain-HTTP request.
var errPlainHTTP = errors.New("plain HTTP refused")

// RoundTrip implements http.RoundTripper.
func (t httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !t.insecure.allows(req.URL.Host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%w to %s: it is not an insecure registry (registries.insecure in init.yaml)", errPlainHTTP, req.URL.Host)
	}
	return t.next.RoundTrip(req)
}

// newTransport makes the HTTP transport of the pulls of one Options.
func newTransport(roots *x509.CertPool, insecure insecureHosts) http.RoundTripper {
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return httpsOnly{insecure: insecure, next: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: responseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       idleConnTimeout,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}}
}

// errStalled ends a layer download that made no progress.
var errStalled = errors.New("download stalled")

// stallGuard is a response body whose request context is cancelled when
// no byte arrives for a while.
type stallGuard struct {
	rc     io.ReadCloser
	ctx    context.Context
	timer  *time.Timer
	after  time.Duration
	cancel context.CancelCauseFunc
}

// withStallGuard derives the context to fetch with and returns the guard
// to wrap the body in once it is open. The guard's timer runs from now, so
// a server that never answers is caught too.
func withStallGuard(ctx context.Context, after time.Duration) (context.Context, func(io.ReadCloser) io.ReadCloser, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(after, func() { cancel(fmt.Errorf("%w: nothing received for %s", errStalled, after)) })
	stop := func() { timer.Stop(); cancel(nil) }
	wrap := func(rc io.ReadCloser) io.ReadCloser {
		return &stallGuard{rc: rc, ctx: ctx, timer: timer, after: after, cancel: cancel}
	}
	return ctx, wrap, stop
}

// Read reads the body and restarts the stall timer on progress; after a
// stall or a cancellation it reports the context's cause.
func (s *stallGuard) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	if n > 0 {
		s.timer.Reset(s.after)
	}
	if err != nil && !errors.Is(err, io.EOF) && s.ctx.Err() != nil {
		err = context.Cause(s.ctx)
	}
	return n, err
}

// Close closes the body and stops the timer.
func (s *stallGuard) Close() error {
	s.timer.Stop()
	err := s.rc.Close()
	s.cancel(nil)
	return err
}
