package reaper

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BecomeSubreaper marks this process as a child subreaper
// (prctl(PR_SET_CHILD_SUBREAPER)): orphaned descendants are re-parented to
// it instead of to the system's init, so that its Reaper collects them. PID 1
// needs no such call.
func BecomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("reaper: prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}

// sigchld is the start of the kernel's siginfo_t as waitid fills it for a
// child: si_signo, si_errno, si_code (errno and code are swapped on MIPS,
// which does not matter here), then the union, aligned to a pointer, whose
// first field is si_pid.
type sigchld struct {
	Signo int32
	_     [2]int32
	_     [unsafe.Sizeof(uintptr(0)) - 4]byte
	Pid   int32
	Uid   uint32
	// Status is the exit code or the signal, as si_code says.
	Status int32
}

// peekZombie returns the pid of one child that has exited, leaving it
// waitable (WNOWAIT), or 0 when no child has exited. ECHILD (no children at
// all) is returned as is.
func peekZombie() (int, error) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		return int((*sigchld)(unsafe.Pointer(&info)).Pid), nil
	}
}

// reapPid reaps pid if it has exited. ok is false when it is still running
// or is not (any more) a child of this process.
func reapPid(pid int) (e Exit, ok bool) {
	for {
		var ws unix.WaitStatus
		var ru unix.Rusage
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, &ru)
		if err == unix.EINTR {
			continue
		}
		if err != nil || got != pid {
			return Exit{}, false
		}
		return Exit{Pid: pid, Status: ws, Rusage: ru}, true
	}
}

// children lists the pids of this process's children, reading the children
// of every thread (a child belongs to the thread that forked it; orphans
// re-parented to this process are listed under one of its threads) and
// falling back to a scan of /proc/*/stat when the kernel has no
// /proc/PID/task/TID/children. buf is reused between calls. The list may
// miss or repeat a child whose parent's list changed while it was read.
func children(buf *[]byte) ([]int, error) {
	self := os.Getpid()
	pids, err := childrenFromTasks(self, buf)
	if errors.Is(err, os.ErrNotExist) {
		return childrenFromStat(self, buf)
	}
	return pids, err
}

// childrenFromTasks reads /proc/PID/task/*/children.
func childrenFromTasks(self int, buf *[]byte) ([]int, error) {
	taskDir := "/proc/" + strconv.Itoa(self) + "/task"
	tasks, err := readDirNames(taskDir)
	if err != nil {
		return nil, fmt.Errorf("reaper: list threads: %w", err)
	}
	var pids []int
	found := false
	for _, tid := range tasks {
		data, err := readInto(buf, taskDir+"/"+tid+"/children")
		if errors.Is(err, os.ErrNotExist) {
			if _, statErr := os.Stat(taskDir + "/" + tid); statErr == nil {
				// The thread exists but has no children file: the kernel
				// lacks CONFIG_PROC_CHILDREN.
				return nil, fmt.Errorf("reaper: read children of thread %s: %w", tid, err)
			}
			continue // the thread has exited meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("reaper: read children of thread %s: %w", tid, err)
		}
		found = true
		for _, f := range bytes.Fields(data) {
			if pid, err := strconv.Atoi(string(f)); err == nil && pid > 0 {
				pids = append(pids, pid)
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("reaper: no thread of %s could be read", taskDir)
	}
	return pids, nil
}

// childrenFromStat scans /proc/*/stat for processes whose parent is self.
func childrenFromStat(self int, buf *[]byte) ([]int, error) {
	names, err := readDirNames("/proc")
	if err != nil {
		return nil, fmt.Errorf("reaper: list processes: %w", err)
	}
	var pids []int
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			continue
		}
		data, err := readInto(buf, "/proc/"+name+"/stat")
		if err != nil {
			continue // gone meanwhile
		}
		if ppid, _, ok := parseStat(data); ok && ppid == self {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// parseStat returns the parent pid and the state letter from the contents of
// /proc/PID/stat ("pid (comm) S ppid ..."; comm may hold spaces and
// parentheses, so the fields are counted from the last ')').
func parseStat(data []byte) (ppid int, state byte, ok bool) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(data[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, 0, false
	}
	return ppid, f[0][0], true
}

// readDirNames returns the names in dir, unsorted.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// readInto reads the whole file into *buf, growing it as needed, and returns
// the filled part. One large read keeps a /proc file's view as consistent as
// the kernel allows.
func readInto(buf *[]byte, name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if cap(*buf) < 64<<10 {
		*buf = make([]byte, 64<<10)
	}
	b := (*buf)[:cap(*buf)]
	n := 0
	for {
		if n == len(b) {
			b = append(b, make([]byte, len(b))...)
		}
		m, err := f.Read(b[n:])
		n += m
		if err == io.EOF || (err == nil && m == 0) {
			*buf = b
			return b[:n], nil
		}
		if err != nil {
			*buf = b
			return nil, err
		}
	}
}
