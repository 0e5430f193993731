package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/api"
)

// ExecIO connects an exec session to the caller.
type ExecIO struct {
	// Stdin is copied to the process when ExecOptions.Stdin is set. Its
	// end (io.EOF) ends the process's input, except with a TTY, where
	// the terminal's EOF character (^D) does that. Exec stops reading it
	// when it returns: if Stdin has SetReadDeadline (an *os.File that the
	// runtime polls, a net.Conn), a blocked Read is interrupted then and
	// the deadline cleared again; otherwise a Read blocked at that moment
	// is abandoned and what it then reads is lost. Callers that go on
	// reading the same input afterwards (a shell) should hand in a pipe
	// they feed and close.
	Stdin io.Reader
	// Stdout and Stderr receive the process's output (nil discards it).
	// With a TTY everything arrives on Stdout.
	Stdout, Stderr io.Writer
	// Resize, if set, carries new terminal sizes for a TTY session.
	Resize <-chan api.TermSize
}

// Exec runs a process in a running container and returns its exit code
// once it has exited. An error means the process could not be started, or
// the stream broke before its exit code arrived.
func (c *Client) Exec(ctx context.Context, name string, opts api.ExecOptions, stdio ExecIO) (int, error) {
	body, err := json.Marshal(opts)
	if err != nil {
		return -1, fmt.Errorf("exec: %w", err)
	}
	conn, err := c.dial(ctx, "", "")
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	stopWatch := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopWatch()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint(nil, "containers", name, "exec"), bytes.NewReader(body))
	if err != nil {
		return -1, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	if err := req.Write(conn); err != nil {
		return -1, ctxErr(ctx, fmt.Errorf("exec: send request: %w", err))
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return -1, ctxErr(ctx, fmt.Errorf("exec: read answer: %w", err))
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return -1, errorFrom(resp)
	}
	id := resp.Header.Get(api.ExecIDHeader)

	done := make(chan struct{})
	defer close(done)
	if opts.Stdin && stdio.Stdin != nil {
		inDone := make(chan struct{})
		safe.Go(c.log, "exec "+id+": input", func() {
			defer close(inDone)
			if _, err := io.Copy(conn, stdio.Stdin); err == nil && !opts.TTY {
				if uc, ok := conn.(*net.UnixConn); ok {
					uc.CloseWrite()
				}
			}
		})
		defer stopInput(stdio.Stdin, inDone)
	}
	if opts.TTY && stdio.Resize != nil && id != "" {
		safe.Go(c.log, "exec "+id+": resize", func() {
			for {
				select {
				case size := <-stdio.Resize:
					// A resize racing the process's end fails; that is
					// no error of the session.
					c.ExecResize(ctx, id, size)
				case <-done:
					return
				}
			}
		})
	}

	stdout, stderr := stdio.Stdout, stdio.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	buf := make([]byte, 32<<10)
	for {
		t, p, err := api.ReadFrame(br, buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the stream ended without an exit code")
			}
			return -1, ctxErr(ctx, fmt.Errorf("exec: %w", err))
		}
		switch t {
		case api.FrameStdout:
			if _, err := stdout.Write(p); err != nil {
				return -1, fmt.Errorf("exec: write output: %w", err)
			}
		case api.FrameStderr:
			if _, err := stderr.Write(p); err != nil {
				return -1, fmt.Errorf("exec: write output: %w", err)
			}
		case api.FrameExit:
			var info api.ExecInfo
			if err := json.Unmarshal(p, &info); err != nil {
				return -1, fmt.Errorf("exec: exit frame: %w", err)
			}
			if info.ExitCode == nil {
				return -1, fmt.Errorf("exec: %s", info.Error)
			}
			return *info.ExitCode, nil
		}
	}
}

// stopInput interrupts a Read of in that is still blocked, when in allows
// it, and clears the deadline again.
func stopInput(in io.Reader, inDone <-chan struct{}) {
	d, ok := in.(interface{ SetReadDeadline(time.Time) error })
	if !ok {
		return
	}
	if d.SetReadDeadline(time.Now()) != nil {
		return
	}
	select {
	case <-inDone:
	case <-time.After(time.Second):
	}
	d.SetReadDeadline(time.Time{})
}

// ctxErr prefers ctx's error: a connection closed because ctx is done
// says less.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
