package safe

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/photon-init/photon-init/internal/syncbuf"
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

func TestGoRecovers(t *testing.T) {
	var buf syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	done := make(chan struct{})
	Go(log, "worker", func() { defer close(done); panic("oops") })
	<-done
	for i := 0; i < 100; i++ { // the log line follows the deferred close
		if strings.Contains(buf.String(), "worker: panic: oops") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("panic not logged")
}
