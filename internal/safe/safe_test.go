package safe

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCall(t *testing.T) {
	if err := Call("ok", func() error { return nil }); err != nil {
		t.Errorf("Call(ok) = %v", err)
	}
	want := errors.New("plain")
	if err := Call("err", func() error { return want }); err != want {
		t.Errorf("Call(err) = %v", err)
	}
	err := Call("boom", func() error { var m map[string]int; m["x"] = 1; return nil })
	if err == nil || !strings.Contains(err.Error(), "boom: panic: assignment to entry in nil map") || !strings.Contains(err.Error(), "safe_test.go") {
		t.Errorf("Call(panic) = %v", err)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }

func TestGoRecovers(t *testing.T) {
	var buf syncBuf
	log := slog.New(slog.NewTextHandler(&buf, nil))
	done := make(chan struct{})
	Go(log, "worker", func() { defer close(done); panic("oops") })
	<-done
	for i := 0; i < 100; i++ { // the log line follows the deferred close
		buf.mu.Lock()
		s := buf.b.String()
		buf.mu.Unlock()
		if strings.Contains(s, "worker: panic: oops") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("panic not logged")
}
