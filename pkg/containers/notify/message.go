package notify

import (
	"bytes"
	"maps"
	"slices"
	"strconv"
	"time"
)

// MaxMessage is the largest datagram accepted, in bytes (systemd's
// NOTIFY_BUFFER_MAX, PIPE_BUF).
const MaxMessage = 4096

// maxOther bounds the number of unrecognised keys kept in one message.
const maxOther = 32

// Credentials identify the sender of a datagram (SCM_CREDENTIALS), in the
// listener's PID and user namespaces.
type Credentials struct {
	PID int
	UID int
	GID int
}

// Message is one sd_notify message, or several merged (see the package
// documentation). A field that the message did not set has its zero value.
type Message struct {
	// Time is when the message was received (of merged ones, the last).
	Time time.Time
	// Sender is who sent it, or nil when the kernel gave no credentials.
	Sender *Credentials

	// Ready is READY=1.
	Ready bool
	// Reloading is RELOADING=1.
	Reloading bool
	// Stopping is STOPPING=1.
	Stopping bool
	// Status is the text of STATUS=, when StatusSet.
	Status string
	// StatusSet says that the message carried STATUS= (an empty Status
	// then clears the status line).
	StatusSet bool
	// Errno is ERRNO= (0: not given).
	Errno int
	// MainPID is MAINPID=, in the sender's PID namespace (0: not given).
	MainPID int
	// Watchdog is WATCHDOG=1, a watchdog ping.
	Watchdog bool
	// WatchdogTrigger is WATCHDOG=trigger: the watchdog is to be treated
	// as expired now.
	WatchdogTrigger bool
	// WatchdogTimeout is WATCHDOG_USEC=, a new watchdog timeout (0: not
	// given).
	WatchdogTimeout time.Duration
	// ExtendTimeout is EXTEND_TIMEOUT_USEC= (0: not given).
	ExtendTimeout time.Duration
	// Other holds the assignments of other keys (BUSERROR, FDSTORE,
	// BARRIER, MONOTONIC_USEC, ...), at most 32 of them; nil when none.
	Other map[string]string
}

// Changes reports whether the message changes the service's state:
// READY, RELOADING, STOPPING or WATCHDOG=trigger. Such messages are never
// merged with others while they wait for the consumer.
func (m *Message) Changes() bool {
	return m.Ready || m.Reloading || m.Stopping || m.WatchdogTrigger
}

// Parse reads the assignments of one datagram. Unknown keys go to Other;
// a value that does not parse leaves its field unset; lines without "="
// are ignored.
func Parse(data []byte) Message {
	var m Message
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		k, v, ok := bytes.Cut(line, []byte{'='})
		if !ok || len(k) == 0 {
			continue
		}
		m.set(string(k), string(v))
	}
	return m
}

// set applies one assignment.
func (m *Message) set(key, value string) {
	switch key {
	case "READY":
		m.Ready = m.Ready || value == "1"
	case "RELOADING":
		m.Reloading = m.Reloading || value == "1"
	case "STOPPING":
		m.Stopping = m.Stopping || value == "1"
	case "STATUS":
		m.Status, m.StatusSet = value, true
	case "ERRNO":
		if n, err := strconv.Atoi(value); err == nil && n > 0 {
			m.Errno = n
		}
	case "MAINPID":
		if n, err := strconv.Atoi(value); err == nil && n > 0 {
			m.MainPID = n
		}
	case "WATCHDOG":
		switch value {
		case "1":
			m.Watchdog = true
		case "trigger":
			m.WatchdogTrigger = true
		}
	case "WATCHDOG_USEC":
		if d, ok := usec(value); ok {
			m.WatchdogTimeout = d
		}
	case "EXTEND_TIMEOUT_USEC":
		if d, ok := usec(value); ok {
			m.ExtendTimeout = d
		}
	default:
		if _, ok := m.Other[key]; ok || len(m.Other) < maxOther {
			if m.Other == nil {
				m.Other = map[string]string{}
			}
			m.Other[key] = value
		}
	}
}

// usec parses a positive number of microseconds.
func usec(s string) (time.Duration, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 || n > uint64(1<<63-1)/uint64(time.Microsecond) {
		return 0, false
	}
	return time.Duration(n) * time.Microsecond, true
}

// merge folds a later message b into m: flags are or-ed, values given in
// b replace m's.
func (m *Message) merge(b *Message) {
	m.Time = b.Time
	if b.Sender != nil {
		m.Sender = b.Sender
	}
	m.Ready = m.Ready || b.Ready
	m.Reloading = m.Reloading || b.Reloading
	m.Stopping = m.Stopping || b.Stopping
	m.Watchdog = m.Watchdog || b.Watchdog
	m.WatchdogTrigger = m.WatchdogTrigger || b.WatchdogTrigger
	if b.StatusSet {
		m.Status, m.StatusSet = b.Status, true
	}
	if b.Errno != 0 {
		m.Errno = b.Errno
	}
	if b.MainPID != 0 {
		m.MainPID = b.MainPID
	}
	if b.WatchdogTimeout != 0 {
		m.WatchdogTimeout = b.WatchdogTimeout
	}
	if b.ExtendTimeout != 0 {
		m.ExtendTimeout = b.ExtendTimeout
	}
	// In a fixed order, so that merging is deterministic when Other is full.
	for _, k := range slices.Sorted(maps.Keys(b.Other)) {
		m.set(k, b.Other[k])
	}
}
