package timeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock advances by a fixed step on every reading.
type fakeClock struct {
	mu  sync.Mutex
	now time.Duration
}

func (c *fakeClock) read() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now += time.Millisecond
	return c.now
}

func TestTimelineRecordsSteps(t *testing.T) {
	clk := &fakeClock{now: time.Second}
	tl := New(500*time.Millisecond, clk.read)
	end := tl.Begin("early", "apifs")       // 1.001
	end(nil)                                // 1.002
	end2 := tl.Begin("system", "modules")   // 1.003
	end2(errors.New("boom\nsecond\nthird")) // 1.004
	kernel, pid1 := tl.Complete()           // 1.005
	if kernel != 1005*time.Millisecond || pid1 != 505*time.Millisecond {
		t.Errorf("Complete = %v, %v", kernel, pid1)
	}
	steps := tl.Steps()
	want := []Step{
		{Name: "apifs", Phase: "early", Start: 1001 * time.Millisecond, End: 1002 * time.Millisecond},
		{Name: "modules", Phase: "system", Start: 1003 * time.Millisecond, End: 1004 * time.Millisecond, Error: "boom\nsecond\nthird"},
	}
	if len(steps) != len(want) {
		t.Fatalf("steps = %+v", steps)
	}
	for i := range want {
		if steps[i] != want[i] {
			t.Errorf("step %d = %+v, want %+v", i, steps[i], want[i])
		}
	}
	var buf bytes.Buffer
	tl.Format(&buf)
	out := buf.String()
	for _, s := range []string{"timeline: early/apifs", "1.001s → 1.002s", "FAILED: boom (and 2 more)"} {
		if !strings.Contains(out, s) {
			t.Errorf("Format output lacks %q:\n%s", s, out)
		}
	}
}

func TestTimelineConcurrentAndRunning(t *testing.T) {
	tl := New(0, nil)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tl.Begin("p", "s")(nil)
		}()
	}
	wg.Wait()
	tl.Begin("p", "unfinished")
	steps := tl.Steps()
	if len(steps) != 51 {
		t.Fatalf("got %d steps", len(steps))
	}
	for _, s := range steps[:50] {
		if s.End < s.Start || s.Start <= 0 {
			t.Errorf("bad real-clock step %+v", s)
		}
	}
	var buf bytes.Buffer
	tl.Format(&buf)
	if !strings.Contains(buf.String(), "running") {
		t.Errorf("unfinished step not shown as running:\n%s", buf.String())
	}
}

func TestWriteFile(t *testing.T) {
	tl := New(time.Second, nil)
	tl.Begin("early", "apifs")(nil)
	tl.Complete()
	path := filepath.Join(t.TempDir(), "run", "photon", "timeline.json")
	if err := tl.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc Document
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("timeline.json does not parse: %v\n%s", err, data)
	}
	if doc.PID1Start != time.Second || len(doc.Steps) != 1 || doc.Steps[0].Name != "apifs" || doc.Complete == 0 {
		t.Errorf("document = %+v", doc)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind")
	}
}
