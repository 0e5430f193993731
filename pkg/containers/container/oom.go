package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
	"golang.org/x/sys/unix"
)

// OOMEvent reports processes of a running container that the kernel's OOM
// killer killed. A consumer that falls behind gets fewer events, never
// fewer kills: each event carries the running total.
type OOMEvent struct {
	// Time is when the kill was seen.
	Time time.Time
	// Kills is the number of kills since the previous event.
	Kills uint64
	// Total is the number of kills since the container started.
	Total uint64
}

// oomEventBuffer is the capacity of a container's OOMEvents channel.
const oomEventBuffer = 16

// v1 settling: the memory cgroup's oom_control notification comes before
// the OOM killer has chosen and counted its victim, so the count is read
// again until it moves, for at most oomSettleTries × oomSettleStep.
const (
	oomSettleStep  = 5 * time.Millisecond
	oomSettleTries = 100
)

// oomWatch tells when a cgroup's OOM kill count may have changed: file is
// a non-blocking inotify descriptor watching memory.events (cgroup v2) or
// an eventfd registered for memory.oom_control (cgroup v1), readable
// after each event; both go through Go's poller, so Close ends a Read
// in progress and no thread is held per container.
type oomWatch struct {
	file  *os.File
	count func() (uint64, error)
	// settle: the notification precedes the count (cgroup v1).
	settle bool
}

// newOOMWatch watches the memory cgroup at dir: memory.events on cgroup
// v2, memory.oom_control through cgroup.event_control on cgroup v1.
func newOOMWatch(dir string, v2 bool) (*oomWatch, error) {
	if dir == "" {
		return nil, errors.New("no memory cgroup")
	}
	if v2 {
		return newOOMWatchV2(dir)
	}
	return newOOMWatchV1(dir)
}

func newOOMWatchV2(dir string) (*oomWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	events := filepath.Join(dir, "memory.events")
	if _, err := unix.InotifyAddWatch(fd, events, unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s: %w", events, err)
	}
	return &oomWatch{
		file:  os.NewFile(uintptr(fd), "inotify "+events),
		count: func() (uint64, error) { return fs2.OOMKillCount(dir) },
	}, nil
}

func newOOMWatchV1(dir string) (*oomWatch, error) {
	control, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return nil, err
	}
	// The kernel needs the file only to register the event.
	defer control.Close()
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	reg := strconv.Itoa(fd) + " " + strconv.Itoa(int(control.Fd()))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(reg), 0o600); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("register for OOM events: %w", err)
	}
	// Closing the eventfd unregisters it (the kernel drops an event whose
	// eventfd is released).
	return &oomWatch{
		file:   os.NewFile(uintptr(fd), "eventfd "+dir),
		count:  func() (uint64, error) { return fs.OOMKillCount(dir) },
		settle: true,
	}, nil
}

// run reads notifications until the file is closed, and calls seen with
// the kill count after each one. base is the count already known.
func (w *oomWatch) run(base uint64, seen func(count uint64)) {
	buf := make([]byte, 4096) // one or more inotify events, or 8 bytes of eventfd
	last := base
	for {
		if _, err := w.file.Read(buf); err != nil {
			return // closed (a v2 cgroup that goes away is read until closed too)
		}
		n, err := w.count()
		for i := 0; w.settle && (err != nil || n == last) && i < oomSettleTries; i++ {
			time.Sleep(oomSettleStep)
			n, err = w.count()
		}
		if err != nil {
			continue
		}
		if n > last {
			last = n
			seen(n)
		}
	}
}

// memoryCgroup is the directory of a container's memory cgroup, and
// whether it is cgroup v2, from libcontainer's cgroup paths.
func memoryCgroup(paths map[string]string) (string, bool) {
	if cgroups.IsCgroup2UnifiedMode() {
		return paths[""], true
	}
	return paths["memory"], false
}

// oomCount reads the kill count of the memory cgroup at dir.
func oomCount(dir string, v2 bool) (uint64, error) {
	if dir == "" {
		return 0, errors.New("no memory cgroup")
	}
	if v2 {
		return fs2.OOMKillCount(dir)
	}
	return fs.OOMKillCount(dir)
}
