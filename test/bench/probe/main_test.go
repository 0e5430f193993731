package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSampleFrom(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		// utime 250, stime 150, cutime 30, cstime 20 ticks; the command
		// name holds a space and a parenthesis.
		"1/stat":   "1 (photon init)) S 0 1 1 0 -1 4194560 1000 0 0 0 250 150 30 20 20 0 12 0 5 30000000 4000 18446744073709551615\n",
		"1/status": "Name:\tinit\nThreads:\t12\nVmHWM:\t   20480 kB\nVmRSS:\t   18432 kB\nRssAnon:\t    5120 kB\nRssFile:\t       0 kB\nRssShmem:\t   13312 kB\n",
		"stat":     "cpu  100 5 50 1000 7 3 2 0 40 0\ncpu0 100 5 50 1000 7 3 2 0 40 0\n",
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := sampleFrom(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"cpu", s.CPU, 4},
		{"children", s.ChildrenCPU, 0.5},
		{"rss", float64(s.RSSkB), 18432},
		{"hwm", float64(s.HWMkB), 20480},
		{"threads", float64(s.Threads), 12},
		{"anon", float64(s.AnonkB), 5120},
		{"shmem", float64(s.ShmemkB), 13312},
		// user+nice+system+irq+softirq+steal, not idle, iowait or guest.
		{"guest busy", s.GuestBusy, 1.6},
	} {
		if diff := c.got - c.want; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestSampleFromMissing(t *testing.T) {
	if _, err := sampleFrom(t.TempDir()); err == nil {
		t.Fatal("no error without a proc filesystem")
	}
}
