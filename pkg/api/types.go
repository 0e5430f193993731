package api

import (
	"time"
)

// Version is the API version, the first element of every path.
const Version = "v1"

// DefaultSocket is the control socket's path on a machine.
const DefaultSocket = "/run/photon/photon.sock"

// SocketEnv is the environment variable that names another socket to
// clients (for "photon-init run --root DIR": DIR/run/photon/photon.sock).
const SocketEnv = "PHOTON_SOCKET"

// ContainerInfo is what the API tells about one container.
type ContainerInfo struct {
	// Name is the container's name (its manifest's file name without
	// .yaml).
	Name string `json:"name"`
	// File is the manifest the container was declared in.
	File string `json:"file,omitempty"`
	// Image is the image reference from the manifest.
	Image string `json:"image,omitempty"`
	// ImageDigest is the digest of the image in use, once it is known.
	ImageDigest string `json:"imageDigest,omitempty"`
	// State is the supervisor's state: waiting, preparing, running,
	// exited, failed, stopping, stopped, invalid, or another state name
	// the supervisor uses (restarting, ...).
	State string `json:"state"`
	// Reason says why the container is in its state, for people.
	Reason string `json:"reason,omitempty"`
	// Pid is the container's first process, as seen from PID 1, while it
	// runs.
	Pid int `json:"pid,omitempty"`
	// StartedAt is when the current (or last) run started.
	StartedAt time.Time `json:"startedAt,omitzero"`
	// FinishedAt is when the last run ended.
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// Restarts counts the restarts by the restart policy.
	Restarts int `json:"restarts"`
	// LastExit is how the last run ended.
	LastExit *Exit `json:"lastExit,omitempty"`
	// Health is the health check's verdict; nil without a health check.
	Health *Health `json:"health,omitempty"`
	// Network is the network mode: host, none, bridge, container:NAME.
	Network string `json:"network,omitempty"`
	// Addresses are the container's IP addresses in CIDR form
	// ("10.88.0.2/16").
	Addresses []string `json:"addresses,omitempty"`
	// Ports are the published ports.
	Ports []Port `json:"ports,omitempty"`
}

// Exit is how a container's process ended.
type Exit struct {
	// Code is the exit status, or 128+N when killed by signal N.
	Code int `json:"code"`
	// Signal is the signal's name ("SIGKILL") when killed.
	Signal string `json:"signal,omitempty"`
	// OOM says the kernel's OOM killer killed it.
	OOM bool `json:"oom,omitempty"`
}

// Health is the state of a container's health check.
type Health struct {
	// Status is starting, healthy or unhealthy.
	Status string `json:"status"`
	// FailingStreak counts the failed checks in a row.
	FailingStreak int `json:"failingStreak,omitempty"`
	// LastCheck is when the check last ran.
	LastCheck time.Time `json:"lastCheck,omitzero"`
	// LastOutput is the end of the last check's output.
	LastOutput string `json:"lastOutput,omitempty"`
}

// Port is one published port.
type Port struct {
	// HostIP is the host address the port is published on ("" = all).
	HostIP string `json:"hostIP,omitempty"`
	// HostPort is the port on the host.
	HostPort uint16 `json:"hostPort"`
	// ContainerPort is the port inside the container.
	ContainerPort uint16 `json:"containerPort"`
	// Protocol is tcp or udp.
	Protocol string `json:"protocol"`
}

// StopOptions tune Stop and Restart.
type StopOptions struct {
	// Timeout is how long to wait after the stop signal before SIGKILL;
	// 0 means the manifest's stop_grace_period.
	Timeout time.Duration
}

// LogOptions select a container's log lines.
type LogOptions struct {
	// Tail is how many of the last lines to give; a negative number
	// means all of them.
	Tail int
	// Since, when not zero, leaves out the lines received before it.
	Since time.Time
	// Follow keeps the stream open, giving new lines as they come.
	Follow bool
}

// LogEntry is one line of a container's output.
type LogEntry struct {
	// Time is when the line was received.
	Time time.Time `json:"time"`
	// Stream is stdout or stderr.
	Stream string `json:"stream"`
	// Line is the text without its newline. Bytes that are not UTF-8
	// reach JSON clients as U+FFFD.
	Line string `json:"line"`
	// Partial says that the line goes on in the next entry of the same
	// stream (it was cut at the log's maximum line length).
	Partial bool `json:"partial,omitempty"`
}

// Event is one change of a container's state.
type Event struct {
	// Time is when the change happened.
	Time time.Time `json:"time"`
	// Container is the container's name.
	Container string `json:"container"`
	// From and To are the states before and after.
	From string `json:"from,omitempty"`
	To   string `json:"to"`
	// Reason says why, for people.
	Reason string `json:"reason,omitempty"`
}

// TermSize is a terminal's size in character cells.
type TermSize struct {
	Height uint16 `json:"height"`
	Width  uint16 `json:"width"`
}

// ExecOptions describe a process to start in a running container.
type ExecOptions struct {
	// Cmd is the program and its arguments (required).
	Cmd []string `json:"cmd"`
	// Env adds KEY=VALUE variables to the container's environment.
	Env []string `json:"env,omitempty"`
	// WorkingDir is the directory to start in ("" = the container's).
	WorkingDir string `json:"workingDir,omitempty"`
	// User is USER[:GROUP] ("" = the container's).
	User string `json:"user,omitempty"`
	// TTY gives the process a terminal: its output arrives as stdout
	// only, and it can be resized.
	TTY bool `json:"tty,omitempty"`
	// Stdin connects the client's input to the process's standard input;
	// without it the process's standard input is empty (/dev/null).
	Stdin bool `json:"stdin,omitempty"`
	// Size is the terminal's initial size with TTY (zero = the
	// runtime's default).
	Size TermSize `json:"size,omitzero"`
}

// ExecInfo describes an exec session.
type ExecInfo struct {
	// ID names the session in /v1/exec/ID paths.
	ID string `json:"id"`
	// Container is the container the process runs in.
	Container string `json:"container"`
	// Cmd is the process's command line.
	Cmd []string `json:"cmd"`
	// TTY says the process has a terminal.
	TTY bool `json:"tty,omitempty"`
	// Running is true until the process has exited.
	Running bool `json:"running"`
	// ExitCode is the process's exit code once it has exited (128+N when
	// killed by signal N).
	ExitCode *int `json:"exitCode,omitempty"`
	// Error is why the session failed, if it did.
	Error string `json:"error,omitempty"`
}

// PowerAction is what a power request does to the machine.
type PowerAction string

// The power actions.
const (
	Poweroff PowerAction = "poweroff"
	Reboot   PowerAction = "reboot"
	Halt     PowerAction = "halt"
)

// Valid reports whether a is one of the power actions.
func (a PowerAction) Valid() bool {
	switch a {
	case Poweroff, Reboot, Halt:
		return true
	}
	return false
}

// VersionInfo is the server's version.
type VersionInfo struct {
	// Version is photon-init's version.
	Version string `json:"version"`
	// API is the API version ("v1").
	API string `json:"api"`
	// Go is the Go version photon-init was built with.
	Go string `json:"go"`
}

// Message is the body of an error response, and of answers that carry
// only a sentence.
type Message struct {
	Message string `json:"message"`
}
