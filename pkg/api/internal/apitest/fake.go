// Package apitest has fakes of the control API's backends, whose exec
// sessions run on real pipes and a real pseudo-terminal, and a helper that
// serves them on a real unix socket, for the tests of pkg/api and its
// clients.
package apitest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/api/internal/tty"
	"github.com/photon-init/photon-init/pkg/boot/timeline"
)

// Containers implements api.Containers over a map, with log lines and
// events the test feeds, and exec sessions whose "process" is a goroutine
// on real pipes or a real pseudo-terminal.
type Containers struct {
	mu      sync.Mutex
	cs      map[string]*api.ContainerInfo
	logs    map[string][]api.LogEntry
	subs    map[chan api.LogEntry]string // log followers and their container
	evSubs  map[chan api.Event]bool
	events  []api.Event
	killed  []string // "NAME SIGNAL"
	stopped []string // "NAME TIMEOUT"

	streamsOpen atomic.Int32 // streams handed out and not closed
	execsOpen   atomic.Int32 // exec sessions not closed
	execStarted chan *Exec
}

func NewContainers() *Containers {
	f := &Containers{
		cs:          map[string]*api.ContainerInfo{},
		logs:        map[string][]api.LogEntry{},
		subs:        map[chan api.LogEntry]string{},
		evSubs:      map[chan api.Event]bool{},
		execStarted: make(chan *Exec, 16),
	}
	started := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f.cs["web"] = &api.ContainerInfo{
		Name: "web", File: "/etc/photon/containers/web.yaml", Image: "demo/web:1.0",
		ImageDigest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		State:       "running", Reason: "started, pid 42", Pid: 42, StartedAt: started, Restarts: 2,
		LastExit: &api.Exit{Code: 137, Signal: "SIGKILL"},
		Health:   &api.Health{Status: "healthy"}, Network: "bridge",
		Addresses: []string{"10.88.0.2/16"},
		Ports:     []api.Port{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
	}
	f.cs["db"] = &api.ContainerInfo{
		Name: "db", Image: "demo/db:2", State: "exited", Reason: "exit 1",
		StartedAt: started, FinishedAt: started.Add(time.Minute), LastExit: &api.Exit{Code: 1},
	}
	for i := range 5 {
		f.logs["web"] = append(f.logs["web"], api.LogEntry{
			Time: started.Add(time.Duration(i) * time.Second), Stream: []string{"stdout", "stderr"}[i%2],
			Line: fmt.Sprintf("line %d", i),
		})
	}
	return f
}

// Container returns a container's current info (it must exist).
func (f *Containers) Container(name string) api.ContainerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.cs[name]
}

// LogLines returns a container's log lines so far.
func (f *Containers) LogLines(name string) []api.LogEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.LogEntry(nil), f.logs[name]...)
}

// Killed returns the Kill calls so far, as "NAME SIGNAL".
func (f *Containers) Killed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.killed...)
}

// Stopped returns the Stop calls so far, as "NAME TIMEOUT".
func (f *Containers) Stopped() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.stopped...)
}

// EventFollowers counts the open event streams.
func (f *Containers) EventFollowers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.evSubs)
}

// StreamsOpen counts the streams handed out and not closed.
func (f *Containers) StreamsOpen() int { return int(f.streamsOpen.Load()) }

// ExecsOpen counts the exec sessions not closed.
func (f *Containers) ExecsOpen() int { return int(f.execsOpen.Load()) }

// ExecStarted receives each exec session as it starts (while its buffer
// has room).
func (f *Containers) ExecStarted() <-chan *Exec { return f.execStarted }

func (f *Containers) get(name string) (*api.ContainerInfo, error) {
	c, ok := f.cs[name]
	if !ok {
		return nil, api.Errorf(http.StatusNotFound, "no container named %q", name)
	}
	return c, nil
}

// List returns the containers by name.
func (f *Containers) List(ctx context.Context) ([]api.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.ContainerInfo
	for _, c := range f.cs {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Inspect returns one container.
func (f *Containers) Inspect(ctx context.Context, name string) (api.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(name)
	if err != nil {
		return api.ContainerInfo{}, err
	}
	return *c, nil
}

func (f *Containers) setState(name, from, to string) {
	f.cs[name].State = to
	ev := api.Event{Time: time.Now(), Container: name, From: from, To: to, Reason: "asked"}
	f.events = append(f.events, ev)
	for ch := range f.evSubs {
		push(ch, ev)
	}
}

// Start starts a container that does not run.
func (f *Containers) Start(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(name)
	if err != nil {
		return err
	}
	if c.State == "running" {
		return fmt.Errorf("container %s is already running: %w", name, api.ErrConflict)
	}
	f.setState(name, c.State, "running")
	return nil
}

// Stop records the call and stops a running container.
func (f *Containers) Stop(ctx context.Context, name string, opts api.StopOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(name)
	if err != nil {
		return err
	}
	f.stopped = append(f.stopped, fmt.Sprintf("%s %v", name, opts.Timeout))
	if c.State == "running" {
		f.setState(name, c.State, "stopped")
	}
	return nil
}

// Restart counts a restart.
func (f *Containers) Restart(ctx context.Context, name string, opts api.StopOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(name)
	if err != nil {
		return err
	}
	c.Restarts++
	f.setState(name, c.State, "running")
	return nil
}

// Kill records the signal for a running container.
func (f *Containers) Kill(ctx context.Context, name string, sig syscall.Signal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.get(name)
	if err != nil {
		return err
	}
	if c.State != "running" {
		return api.Errorf(http.StatusConflict, "container %s is not running", name)
	}
	sigName := unix.SignalName(sig)
	if sigName == "" {
		sigName = strconv.Itoa(int(sig))
	}
	f.killed = append(f.killed, name+" "+sigName)
	return nil
}

// Logs gives the lines selected by opts, then (following) the emitted ones.
func (f *Containers) Logs(ctx context.Context, name string, opts api.LogOptions) (api.Stream[api.LogEntry], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.get(name); err != nil {
		return nil, err
	}
	var lines []api.LogEntry
	for _, l := range f.logs[name] {
		if opts.Since.IsZero() || !l.Time.Before(opts.Since) {
			lines = append(lines, l)
		}
	}
	if opts.Tail >= 0 && len(lines) > opts.Tail {
		lines = lines[len(lines)-opts.Tail:]
	}
	f.streamsOpen.Add(1)
	if !opts.Follow {
		return api.NewStream(lines, nil, func() { f.streamsOpen.Add(-1) }), nil
	}
	ch := make(chan api.LogEntry, 64)
	f.subs[ch] = name
	return api.NewStream(lines, ch, func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
		f.streamsOpen.Add(-1)
	}), nil
}

// push sends v unless ch is full: a slow follower loses values rather
// than blocking the producer.
func push[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}

// Emit adds a log line and hands it to the followers.
func (f *Containers) Emit(name, line string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := api.LogEntry{Time: time.Now(), Stream: "stdout", Line: line}
	f.logs[name] = append(f.logs[name], e)
	for ch, n := range f.subs {
		if n == name {
			push(ch, e)
		}
	}
}

// Followers counts the open log-following streams.
func (f *Containers) Followers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// Events gives the events since since (none when zero), then new ones.
func (f *Containers) Events(ctx context.Context, since time.Time) (api.Stream[api.Event], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var old []api.Event
	if !since.IsZero() {
		for _, e := range f.events {
			if !e.Time.Before(since) {
				old = append(old, e)
			}
		}
	}
	f.streamsOpen.Add(1)
	ch := make(chan api.Event, 64)
	f.evSubs[ch] = true
	return api.NewStream(old, ch, func() {
		f.mu.Lock()
		delete(f.evSubs, ch)
		f.mu.Unlock()
		f.streamsOpen.Add(-1)
	}), nil
}

// Exec starts a fake process. Its command picks the behaviour:
//
//	echo        every input line back as "out: LINE" on stdout and
//	            "err: LINE" on stderr; at the end of input "bye" and exit
//	            with the number of lines
//	sleep       nothing until closed
//	flood       output without end until closed
//	shell       (TTY) a line-oriented program on a real pseudo-terminal:
//	            "size" answers "size ROWSxCOLS", "exit N" exits with N,
//	            anything else "you said: LINE"
//
// A program killed by Close exits 137.
func (f *Containers) Exec(ctx context.Context, name string, opts api.ExecOptions, stdio api.ExecIO) (api.ExecSession, error) {
	f.mu.Lock()
	c, err := f.get(name)
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if c.State != "running" {
		return nil, api.Errorf(http.StatusConflict, "container %s is not running", name)
	}
	e := &Exec{exited: make(chan struct{}), closed: make(chan struct{})}
	switch opts.Cmd[0] {
	case "echo", "sleep", "flood":
		e.startPipes(opts, stdio)
	case "shell":
		if err := e.startTTY(opts, stdio); err != nil {
			return nil, err
		}
	default:
		return nil, api.Errorf(http.StatusBadRequest, "exec: %s: no such program", opts.Cmd[0])
	}
	f.execsOpen.Add(1)
	e.onClose = func() { f.execsOpen.Add(-1) }
	select {
	case f.execStarted <- e:
	default:
	}
	return e, nil
}

// Exec is an exec session whose process is a goroutine.
type Exec struct {
	mu       sync.Mutex // guards output against writes after the exit
	exited   chan struct{}
	exitOnce sync.Once
	code     int
	master   *os.File // TTY only
	closers  []io.Closer
	outDone  chan struct{} // TTY: the terminal's output is copied
	once     sync.Once
	onClose  func()
	closed   chan struct{}
}

// exit ends the process with code (the first exit wins).
func (e *Exec) exit(code int) {
	e.exitOnce.Do(func() {
		e.mu.Lock()
		e.code = code
		close(e.exited)
		e.mu.Unlock()
	})
}

// out writes to w unless the process has exited.
func (e *Exec) out(w io.Writer, text string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	select {
	case <-e.exited:
		return os.ErrClosed
	default:
	}
	if w == nil {
		return nil
	}
	_, err := io.WriteString(w, text)
	return err
}

func (e *Exec) startPipes(opts api.ExecOptions, stdio api.ExecIO) {
	switch opts.Cmd[0] {
	case "echo":
		go func() {
			in := stdio.Stdin
			if in == nil {
				in = strings.NewReader("")
			}
			sc := bufio.NewScanner(in)
			n := 0
			for sc.Scan() {
				n++
				if e.out(stdio.Stdout, "out: "+sc.Text()+"\n") != nil || e.out(stdio.Stderr, "err: "+sc.Text()+"\n") != nil {
					return
				}
			}
			e.out(stdio.Stdout, "bye\n")
			e.exit(n)
		}()
	case "sleep":
		go func() {
			<-e.closed
		}()
	case "flood":
		go func() {
			line := strings.Repeat("x", 1023) + "\n"
			for e.out(stdio.Stdout, line) == nil {
			}
		}()
	}
}

func (e *Exec) startTTY(opts api.ExecOptions, stdio api.ExecIO) error {
	master, slave, err := tty.OpenPTY()
	if err != nil {
		return err
	}
	if opts.Size != (api.TermSize{}) {
		if err := tty.SetSize(master, opts.Size); err != nil {
			return err
		}
	}
	e.master = master
	e.closers = []io.Closer{master, slave}
	// The runtime's side: the client's input to the terminal, the
	// terminal's output to the client.
	if stdio.Stdin != nil {
		go io.Copy(master, stdio.Stdin)
	}
	e.outDone = make(chan struct{})
	go func() {
		defer close(e.outDone)
		io.Copy(stdio.Stdout, master)
	}()
	// The process.
	go func() {
		code := 0
		sc := bufio.NewScanner(slave)
		fmt.Fprint(slave, "$ ")
		for sc.Scan() {
			line := sc.Text()
			if n, ok := strings.CutPrefix(line, "exit "); ok {
				code, _ = strconv.Atoi(n)
				break
			}
			if line == "size" {
				ws, err := tty.Size(slave)
				if err != nil {
					fmt.Fprintf(slave, "size: %v\n", err)
				} else {
					fmt.Fprintf(slave, "size %dx%d\n", ws.Height, ws.Width)
				}
			} else {
				fmt.Fprintf(slave, "you said: %s\n", line)
			}
			fmt.Fprint(slave, "$ ")
		}
		// The process's end closes its side of the terminal: the master
		// reads the rest of the output, then EIO.
		slave.Close()
		e.exit(code)
	}()
	return nil
}

// Resize sets the terminal's size.
func (e *Exec) Resize(size api.TermSize) error {
	if e.master == nil {
		return fmt.Errorf("no terminal")
	}
	return tty.SetSize(e.master, size)
}

// Wait waits for the process's exit code and, with a TTY, its output.
func (e *Exec) Wait(ctx context.Context) (int, error) {
	select {
	case <-e.exited:
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	if e.outDone != nil {
		select {
		case <-e.outDone:
		case <-time.After(2 * time.Second):
		}
	}
	return e.code, nil
}

// Close kills the process (exit 137) and closes its terminal.
func (e *Exec) Close() error {
	e.once.Do(func() {
		close(e.closed)
		e.exit(137)
		for _, c := range e.closers {
			c.Close()
		}
		e.onClose()
	})
	return nil
}

// Buffer is a bytes.Buffer for one writer and other readers.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Machine implements api.Machine, recording power requests.
type Machine struct {
	mu    sync.Mutex
	power []api.PowerAction
}

// Timeline returns a fixed timeline of two steps, the second failed.
func (m *Machine) Timeline(ctx context.Context) (*timeline.Document, error) {
	return &timeline.Document{
		PID1Start: 412 * time.Millisecond,
		Complete:  900 * time.Millisecond,
		Steps: []timeline.Step{
			{Name: "mount", Phase: "early", Start: 420 * time.Millisecond, End: 431 * time.Millisecond},
			{Name: "network", Phase: "net", Start: 440 * time.Millisecond, End: 700 * time.Millisecond, Error: "dhcp: no lease"},
		},
	}, nil
}

// Power records the request.
func (m *Machine) Power(ctx context.Context, action api.PowerAction) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.power = append(m.power, action)
	return nil
}

// Actions returns the power requests so far.
func (m *Machine) Actions() []api.PowerAction {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]api.PowerAction(nil), m.power...)
}
