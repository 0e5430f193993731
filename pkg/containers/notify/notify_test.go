package notify

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Message
	}{
		{"ready", "READY=1", Message{Ready: true}},
		{"ready with status and trailing newline", "READY=1\nSTATUS=Serving 3 clients\n", Message{Ready: true, Status: "Serving 3 clients", StatusSet: true}},
		{"empty status clears", "STATUS=", Message{StatusSet: true}},
		{"status keeps '='", "STATUS=a=b", Message{Status: "a=b", StatusSet: true}},
		{"stopping with errno", "STOPPING=1\nERRNO=2", Message{Stopping: true, Errno: 2}},
		{"reloading", "RELOADING=1\nMONOTONIC_USEC=12345", Message{Reloading: true, Other: map[string]string{"MONOTONIC_USEC": "12345"}}},
		{"watchdog ping", "WATCHDOG=1", Message{Watchdog: true}},
		{"watchdog trigger", "WATCHDOG=trigger", Message{WatchdogTrigger: true}},
		{"watchdog timeout", "WATCHDOG_USEC=2500000", Message{WatchdogTimeout: 2500 * time.Millisecond}},
		{"extend timeout", "EXTEND_TIMEOUT_USEC=1000", Message{ExtendTimeout: time.Millisecond}},
		{"mainpid", "MAINPID=42", Message{MainPID: 42}},
		{"bad values leave fields unset", "READY=yes\nMAINPID=abc\nERRNO=-1\nWATCHDOG=2\nWATCHDOG_USEC=0\nEXTEND_TIMEOUT_USEC=x", Message{}},
		{"lines without = and empty keys ignored", "garbage\n=1\n\nREADY=1", Message{Ready: true}},
		{"other keys kept", "FDSTORE=1\nFDNAME=db", Message{Other: map[string]string{"FDSTORE": "1", "FDNAME": "db"}}},
		{"last status wins", "STATUS=a\nSTATUS=b", Message{Status: "b", StatusSet: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Parse([]byte(tt.in)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) = %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseBoundsOtherKeys(t *testing.T) {
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "K%d=v\n", i)
	}
	if m := Parse([]byte(b.String())); len(m.Other) != maxOther {
		t.Errorf("%d other keys kept, want %d", len(m.Other), maxOther)
	}
}

func listen(t *testing.T, opts Options) *Listener {
	t.Helper()
	l, err := Listen(filepath.Join(t.TempDir(), "notify.sock"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func receive(t *testing.T, l *Listener) Message {
	t.Helper()
	select {
	case m, ok := <-l.Messages():
		if !ok {
			t.Fatal("Messages closed")
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	return Message{}
}

// sdNotify sends state the way services do, with go-systemd.
func sdNotify(t *testing.T, path, state string) {
	t.Helper()
	t.Setenv("NOTIFY_SOCKET", path)
	sent, err := daemon.SdNotify(false, state)
	if err != nil || !sent {
		t.Fatalf("SdNotify(%q): sent %v, %v", state, sent, err)
	}
}

func TestListenerReceivesSdNotify(t *testing.T) {
	l := listen(t, Options{})
	st, err := os.Stat(l.Path())
	if err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != DefaultMode {
		t.Fatalf("socket file: %v %v", st.Mode(), err)
	}
	before := time.Now()
	sdNotify(t, l.Path(), "READY=1\nSTATUS=up and running")
	m := receive(t, l)
	if !m.Ready || m.Status != "up and running" || !m.StatusSet {
		t.Errorf("message %+v", m)
	}
	if m.Time.Before(before) || time.Since(m.Time) > 5*time.Second {
		t.Errorf("time %v", m.Time)
	}
	want := Credentials{PID: os.Getpid(), UID: os.Getuid(), GID: os.Getgid()}
	if m.Sender == nil || *m.Sender != want {
		t.Errorf("sender %+v, want %+v", m.Sender, want)
	}
	sdNotify(t, l.Path(), daemon.SdNotifyWatchdog)
	if m := receive(t, l); !m.Watchdog || m.Ready {
		t.Errorf("watchdog message %+v", m)
	}
	sdNotify(t, l.Path(), daemon.SdNotifyStopping)
	if m := receive(t, l); !m.Stopping {
		t.Errorf("stopping message %+v", m)
	}
}

// A consumer that does not read never blocks the listener: a flood of
// status lines is merged and READY=1 survives in its place.
func TestSlowConsumer(t *testing.T) {
	l := listen(t, Options{QueueLen: 16, Buffer: 2})
	t.Setenv("NOTIFY_SOCKET", l.Path())
	done := make(chan error, 1)
	go func() {
		for i := range 2000 {
			state := fmt.Sprintf("STATUS=step %d\nWATCHDOG=1", i)
			switch i {
			case 500:
				state = "READY=1"
			case 1000:
				state = "RELOADING=1"
			case 1001:
				state = "READY=1\nSTATUS=reloaded"
			}
			if _, err := daemon.SdNotify(false, state); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("senders blocked: the listener stopped reading while nobody consumed")
	}
	// Let the reader take the last datagrams off the socket.
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		last := len(l.queue) > 0 && l.queue[len(l.queue)-1].Status == "step 1999"
		l.mu.Unlock()
		if last || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.Close()
	var got []string
	for m := range l.Messages() {
		switch {
		case m.Reloading:
			got = append(got, "RELOADING")
		case m.Ready:
			got = append(got, "READY")
		}
		if m.Status == "step 1999" {
			got = append(got, "last status")
		}
	}
	want := []string{"READY", "RELOADING", "READY", "last status"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("state changes in order %q, want %q", got, want)
	}
}

// Under a flood of state changes the queue stays bounded and the flags
// survive in the merged tail.
func TestQueueBound(t *testing.T) {
	// A delivery goroutine runs already (stuck on an absent consumer):
	// every message is queued.
	l := &Listener{maxQ: 4, forwarding: true}
	for i := range 100 {
		l.push(Message{Ready: i%2 == 0, Stopping: i%2 == 1, MainPID: i + 1})
	}
	if len(l.queue) != 4 {
		t.Fatalf("queue length %d", len(l.queue))
	}
	tail := l.queue[3]
	if !tail.Ready || !tail.Stopping || tail.MainPID != 100 {
		t.Errorf("merged tail %+v", tail)
	}
}

// The pipe of BARRIER=1 (sd_notify_barrier) is closed at once, as the
// protocol asks, and no descriptor is kept.
func TestBarrierAndPassedFdsClosed(t *testing.T) {
	l := listen(t, Options{})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Sendmsg(fd, []byte("BARRIER=1"), unix.UnixRights(int(w.Fd())), &unix.SockaddrUnix{Name: l.Path()}, 0); err != nil {
		t.Fatal(err)
	}
	w.Close()
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("barrier pipe: read %d, %v; want EOF", n, err)
	}
	if m := receive(t, l); m.Other["BARRIER"] != "1" {
		t.Errorf("message %+v", m)
	}
}

func TestOversizedDatagramDropped(t *testing.T) {
	l := listen(t, Options{})
	sdNotify(t, l.Path(), "STATUS="+strings.Repeat("x", MaxMessage))
	sdNotify(t, l.Path(), "READY=1")
	if m := receive(t, l); !m.Ready || m.StatusSet {
		t.Errorf("first message delivered %+v, want only READY", m)
	}
}

func TestCloseDeliversPendingThenCloses(t *testing.T) {
	l := listen(t, Options{})
	sdNotify(t, l.Path(), "READY=1")
	sdNotify(t, l.Path(), "STOPPING=1")
	time.Sleep(50 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := os.Lstat(l.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Close: %v", err)
	}
	var n int
	for range l.Messages() {
		n++
	}
	if n != 2 {
		t.Errorf("%d messages after Close, want 2", n)
	}
}

func TestCloseGivesUpOnAbsentConsumer(t *testing.T) {
	l := listen(t, Options{Buffer: 1, CloseLinger: 50 * time.Millisecond})
	for _, s := range []string{"READY=1", "STOPPING=1", "RELOADING=1"} {
		sdNotify(t, l.Path(), s)
	}
	time.Sleep(50 * time.Millisecond)
	l.Close()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-l.Messages():
			if !ok {
				return
			}
			time.Sleep(100 * time.Millisecond) // slower than the linger
		case <-deadline:
			t.Fatal("Messages not closed")
		}
	}
}

func TestStaleSocketAndLongPath(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, strings.Repeat("d", 100))
	if err := os.Mkdir(long, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(long, "notify.sock")
	for range 2 { // the second Listen replaces the first one's socket
		l, err := Listen(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		// The client cannot name the long path either.
		dir, err := os.Open(long)
		if err != nil {
			t.Fatal(err)
		}
		sdNotify(t, fmt.Sprintf("/proc/self/fd/%d/notify.sock", dir.Fd()), "READY=1")
		dir.Close()
		if m := receive(t, l); !m.Ready {
			t.Errorf("message %+v", m)
		}
		l.conn.Close() // a crash: the file stays
		<-l.readerDone
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := Listen(file, Options{}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
}

// TestQuietListenerCost pins what a listener costs while its container
// is quiet and its consumer keeps up: one goroutine (the reader) and no
// read buffer; the delivery goroutine exists only while messages wait.
func TestQuietListenerCost(t *testing.T) {
	const n = 20
	heap := func() uint64 {
		runtime.GC()
		runtime.GC() // the buffer pools keep their contents through one
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	time.Sleep(20 * time.Millisecond)
	g0, h0 := runtime.NumGoroutine(), heap()
	ls := make([]*Listener, n)
	for i := range ls {
		ls[i] = listen(t, Options{Buffer: 1})
		// A message taken at once, and a backlog: a second one waits
		// (the channel holds one) until the consumer comes.
		sdNotify(t, ls[i].Path(), "STATUS=one")
		sdNotify(t, ls[i].Path(), "READY=1")
	}
	for _, l := range ls {
		if m := receive(t, l); m.Status != "one" {
			t.Fatalf("first message %+v", m)
		}
		if m := receive(t, l); !m.Ready {
			t.Fatalf("second message %+v", m)
		}
	}
	var g int
	for range 100 { // the delivery goroutines end once their queue is empty
		if g = runtime.NumGoroutine() - g0; g <= n {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	per := (int64(heap()) - int64(h0)) / n
	t.Logf("%d goroutines and %d bytes of heap per quiet listener", g/n, per)
	if g > n {
		t.Errorf("%d goroutines for %d quiet listeners, want one each", g, n)
	}
	// The Listener, its socket, its channel and the test's own
	// bookkeeping (a temporary directory, cleanups) take about 4.3 KiB;
	// a read buffer held while waiting would be 6 KiB more.
	if per > 6<<10 {
		t.Errorf("%d bytes of heap per quiet listener, want at most 6 KiB", per)
	}
}
