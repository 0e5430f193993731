package nice

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// threadNice reads the calling thread's nice value from /proc.
func threadNice(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/thread-self/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command's closing parenthesis; nice is field 19.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	n, err := strconv.Atoi(fields[16])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRun(t *testing.T) {
	want := errors.New("fn's error")
	var inside, tid int
	err := Run(10, func() error {
		inside, tid = threadNice(t), unix.Gettid()
		return want
	})
	if !errors.Is(err, want) {
		t.Errorf("Run = %v, want fn's error", err)
	}
	if inside != 10 {
		t.Errorf("nice inside fn = %d, want 10", inside)
	}
	if os.Geteuid() != 0 {
		return // only root may raise the priority back
	}
	p, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		t.Fatal(err)
	}
	// The raw system call answers 20 - nice.
	if p != 20 {
		t.Errorf("thread %d's priority after Run = %d, want 20 (nice 0)", tid, p)
	}
}
