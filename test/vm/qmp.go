package vm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Event is an asynchronous QMP event, such as SHUTDOWN or POWERDOWN.
type Event struct {
	// Name is the event's name, e.g. "SHUTDOWN".
	Name string
	// Data is the event's payload, e.g. {"guest":true,"reason":"guest-shutdown"}.
	Data json.RawMessage
	// At is when the host received the event.
	At time.Time
}

// QMPError is an error QEMU answered a command with.
type QMPError struct {
	// Command is the command that failed.
	Command string
	// Class is QEMU's error class, e.g. "GenericError".
	Class string
	// Desc is QEMU's description.
	Desc string
}

// Error implements error.
func (e *QMPError) Error() string {
	return fmt.Sprintf("QMP %s: %s: %s", e.Command, e.Class, e.Desc)
}

// qmpMessage is any message QEMU sends on a QMP connection.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Event  string          `json:"event"`
	Data   json.RawMessage `json:"data"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	ID *uint64 `json:"id"`
}

// qmpClient speaks QEMU's machine protocol on one connection: commands one
// at a time, events collected as they come.
type qmpClient struct {
	conn net.Conn

	// cmdMu serializes commands.
	cmdMu sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan qmpMessage
	events  []Event
	readErr error
	done    chan struct{}
}

// dialQMP connects to the QMP socket at path, reads the greeting and
// leaves capabilities negotiation mode.
func dialQMP(path string, timeout time.Duration) (*qmpClient, error) {
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("QMP: %w", err)
	}
	c := &qmpClient{conn: conn, pending: map[uint64]chan qmpMessage{}, done: make(chan struct{})}
	r := bufio.NewReader(conn)
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("QMP: %w", err)
	}
	var greeting qmpMessage
	line, err := r.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &greeting)
	}
	if err != nil || greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("QMP greeting %q: %v", line, err)
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("QMP: %w", err)
	}
	go c.readLoop(r)
	if _, err := c.execute("qmp_capabilities", nil, timeout); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// readLoop dispatches replies to their commands and records events until
// the connection closes.
func (c *qmpClient) readLoop(r *bufio.Reader) {
	var err error
	for {
		var line []byte
		line, err = r.ReadBytes('\n')
		if len(line) > 0 {
			var m qmpMessage
			if jerr := json.Unmarshal(line, &m); jerr != nil {
				err = fmt.Errorf("QMP: undecodable message %q: %w", line, jerr)
				break
			}
			c.dispatch(m)
		}
		if err != nil {
			break
		}
	}
	c.mu.Lock()
	c.readErr = err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
	close(c.done)
}

// dispatch hands one message to its waiter or records it as an event.
func (c *qmpClient) dispatch(m qmpMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.Event != "" {
		c.events = append(c.events, Event{Name: m.Event, Data: m.Data, At: time.Now()})
		return
	}
	if m.ID == nil {
		return
	}
	if ch, ok := c.pending[*m.ID]; ok {
		ch <- m
		delete(c.pending, *m.ID)
	}
}

// execute runs one command and returns its "return" value.
func (c *qmpClient) execute(command string, args any, timeout time.Duration) (json.RawMessage, error) {
	c.cmdMu.Lock()
	defer c.cmdMu.Unlock()
	c.mu.Lock()
	if c.readErr != nil || isClosed(c.done) {
		c.mu.Unlock()
		return nil, fmt.Errorf("QMP %s: connection closed (QEMU exited?)", command)
	}
	c.nextID++
	id := c.nextID
	ch := make(chan qmpMessage, 1)
	c.pending[id] = ch
	c.mu.Unlock()

	req := map[string]any{"execute": command, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	data, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("QMP %s: encoding arguments: %w", command, err)
	}
	if err := c.conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", command, err)
	}
	if _, err := c.conn.Write(append(data, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", command, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case m, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("QMP %s: connection closed before the reply (QEMU exited?)", command)
		}
		if m.Error != nil {
			return nil, &QMPError{Command: command, Class: m.Error.Class, Desc: m.Error.Desc}
		}
		return m.Return, nil
	case <-timer.C:
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, fmt.Errorf("QMP %s: no reply within %s", command, timeout)
	}
}

// eventsSnapshot returns the events received so far.
func (c *qmpClient) eventsSnapshot() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

// close ends the connection and waits for the reader to stop.
func (c *qmpClient) close() {
	c.conn.Close()
	<-c.done
}

// isClosed reports whether ch is closed, without blocking.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// errQMPUnavailable is returned by QMP calls on a VM that has no QMP
// connection.
var errQMPUnavailable = errors.New("QMP: not connected")
