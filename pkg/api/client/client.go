// Package client talks to photon-init's control socket: one method per
// photonctl verb, used by photonctl and by the serial console's built-in
// shell alike. Failures the server reports come back as *api.Error, so
// errors.Is(err, api.ErrNotFound) tells an unknown container apart.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/boot/timeline"
)

// Options configure a Client.
type Options struct {
	// Socket is the control socket's path ("" = api.DefaultSocket).
	Socket string
	// Log receives reports of panics in the client's goroutines (the
	// debug shell runs it inside PID 1); nil discards them.
	Log *slog.Logger
}

// Client is a connection-less handle on the control socket; each call
// dials it. It is safe for concurrent use.
type Client struct {
	socket string
	log    *slog.Logger
	http   *http.Client
}

// New returns a client for the socket in opts.
func New(opts Options) *Client {
	if opts.Socket == "" {
		opts.Socket = api.DefaultSocket
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	c := &Client{socket: opts.Socket, log: opts.Log}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext:         c.dial,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}}
	return c
}

// SocketFromEnv returns the socket named by $PHOTON_SOCKET (looked up with
// getenv, os.Getenv when nil), or api.DefaultSocket.
func SocketFromEnv(getenv func(string) string) string {
	if getenv != nil {
		if s := getenv(api.SocketEnv); s != "" {
			return s
		}
	}
	return api.DefaultSocket
}

// Socket is the path the client dials.
func (c *Client) Socket() string { return c.socket }

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return nil, fmt.Errorf("cannot reach photon-init at %s (is it running? --socket or $%s name another socket): %w", c.socket, api.SocketEnv, unwrapOpError(err))
	}
	return conn, nil
}

// unwrapOpError drops net.OpError's "dial unix PATH:" prefix, which the
// message already says.
func unwrapOpError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// endpoint is the URL of an API path (elements are escaped).
func endpoint(q url.Values, elems ...string) string {
	for i, e := range elems {
		elems[i] = url.PathEscape(e)
	}
	u := "http://photon/" + api.Version + "/" + strings.Join(elems, "/")
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// do sends a request and decodes a 2xx answer's JSON into out (if not
// nil); any other answer is returned as *api.Error.
func (c *Client) do(ctx context.Context, method, target string, out any) error {
	resp, err := c.send(ctx, method, target)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, resp.Request.URL.Path, err)
	}
	return nil
}

// send sends a request without a body and returns a 2xx answer; any other
// is read and returned as *api.Error.
func (c *Client) send(ctx context.Context, method, target string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, errorFrom(resp)
	}
	return resp, nil
}

// errorFrom turns a failed answer into *api.Error.
func errorFrom(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var m api.Message
	if json.Unmarshal(body, &m) != nil || m.Message == "" {
		m.Message = strings.TrimSpace(string(body))
		if m.Message == "" {
			m.Message = http.StatusText(resp.StatusCode)
		}
	}
	return &api.Error{Status: resp.StatusCode, Message: m.Message}
}

// Version returns the server's version.
func (c *Client) Version(ctx context.Context) (api.VersionInfo, error) {
	var v api.VersionInfo
	err := c.do(ctx, http.MethodGet, endpoint(nil, "version"), &v)
	return v, err
}

// List returns every container.
func (c *Client) List(ctx context.Context) ([]api.ContainerInfo, error) {
	var list []api.ContainerInfo
	err := c.do(ctx, http.MethodGet, endpoint(nil, "containers"), &list)
	return list, err
}

// Inspect returns one container.
func (c *Client) Inspect(ctx context.Context, name string) (api.ContainerInfo, error) {
	var info api.ContainerInfo
	err := c.do(ctx, http.MethodGet, endpoint(nil, "containers", name), &info)
	return info, err
}

// Start starts a container.
func (c *Client) Start(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, endpoint(nil, "containers", name, "start"), nil)
}

// Stop stops a container and returns once it has stopped.
func (c *Client) Stop(ctx context.Context, name string, opts api.StopOptions) error {
	return c.do(ctx, http.MethodPost, endpoint(stopQuery(opts), "containers", name, "stop"), nil)
}

// Restart stops a container and starts it again.
func (c *Client) Restart(ctx context.Context, name string, opts api.StopOptions) error {
	return c.do(ctx, http.MethodPost, endpoint(stopQuery(opts), "containers", name, "restart"), nil)
}

func stopQuery(opts api.StopOptions) url.Values {
	if opts.Timeout <= 0 {
		return nil
	}
	return url.Values{"timeout": {opts.Timeout.String()}}
}

// Kill sends a signal to a container's first process.
func (c *Client) Kill(ctx context.Context, name string, sig syscall.Signal) error {
	q := url.Values{"signal": {strconv.Itoa(int(sig))}}
	return c.do(ctx, http.MethodPost, endpoint(q, "containers", name, "kill"), nil)
}

// Logs calls fn with each selected log line of a container, until the
// lines end (not following), fn returns an error (returned as is), or ctx
// is done (returning ctx.Err()).
func (c *Client) Logs(ctx context.Context, name string, opts api.LogOptions, fn func(api.LogEntry) error) error {
	q := url.Values{}
	if opts.Tail >= 0 {
		q.Set("tail", strconv.Itoa(opts.Tail))
	}
	if !opts.Since.IsZero() {
		q.Set("since", opts.Since.Format(time.RFC3339Nano))
	}
	if opts.Follow {
		q.Set("follow", "true")
	}
	return stream(ctx, c, endpoint(q, "containers", name, "logs"), fn)
}

// Events calls fn with each container event, the remembered ones since
// the given time first (none when since is zero), until fn returns an
// error or ctx is done (returning ctx.Err()).
func (c *Client) Events(ctx context.Context, since time.Time, fn func(api.Event) error) error {
	q := url.Values{}
	if !since.IsZero() {
		q.Set("since", since.Format(time.RFC3339Nano))
	}
	return stream(ctx, c, endpoint(q, "events"), fn)
}

// maxStreamLine bounds one line of a stream (a log line is at most 16 KiB
// of text, which JSON escaping may make six times as long).
const maxStreamLine = 1 << 20

// stream reads a newline-delimited JSON answer, calling fn with each value.
func stream[T any](ctx context.Context, c *Client, target string, fn func(T) error) error {
	resp, err := c.send(ctx, http.MethodGet, target)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxStreamLine)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var failed struct {
			Error *string `json:"error"`
		}
		if json.Unmarshal(line, &failed) == nil && failed.Error != nil {
			return errors.New(*failed.Error)
		}
		var v T
		if err := json.Unmarshal(line, &v); err != nil {
			return fmt.Errorf("%s: decode: %w", resp.Request.URL.Path, err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", resp.Request.URL.Path, err)
	}
	return nil
}

// Timeline returns the boot timeline.
func (c *Client) Timeline(ctx context.Context) (*timeline.Document, error) {
	var doc timeline.Document
	if err := c.do(ctx, http.MethodGet, endpoint(nil, "timeline"), &doc); err != nil {
		return nil, err
	}
	return &doc, nil
}

// Power asks the machine to power off, reboot or halt; it returns once the
// request is taken.
func (c *Client) Power(ctx context.Context, action api.PowerAction) error {
	return c.do(ctx, http.MethodPost, endpoint(nil, "power", string(action)), nil)
}

// ExecInspect returns an exec session's state (the running ones and the
// last that ended).
func (c *Client) ExecInspect(ctx context.Context, id string) (api.ExecInfo, error) {
	var info api.ExecInfo
	err := c.do(ctx, http.MethodGet, endpoint(nil, "exec", id), &info)
	return info, err
}

// ExecResize resizes an exec session's terminal.
func (c *Client) ExecResize(ctx context.Context, id string, size api.TermSize) error {
	q := url.Values{"h": {strconv.Itoa(int(size.Height))}, "w": {strconv.Itoa(int(size.Width))}}
	return c.do(ctx, http.MethodPost, endpoint(q, "exec", id, "resize"), nil)
}
