package main

import (
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestStatOf(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []float64
		want Stat
	}{
		{"none", nil, Stat{}},
		{"only missing", []float64{math.NaN()}, Stat{}},
		{"one", []float64{2}, Stat{Median: 2, Min: 2, Max: 2, N: 1}},
		{"odd", []float64{3, 1, 2}, Stat{Median: 2, Min: 1, Max: 3, N: 3}},
		{"even", []float64{4, 1, 3, 2}, Stat{Median: 2.5, Min: 1, Max: 4, N: 4}},
		{"missing left out", []float64{5, math.NaN(), 1}, Stat{Median: 3, Min: 1, Max: 5, N: 2}},
	} {
		if got := statOf(c.in); got != c.want {
			t.Errorf("%s: statOf(%v) = %+v, want %+v", c.name, c.in, got, c.want)
		}
	}
}

func TestRatioAndFormat(t *testing.T) {
	a, b := Stat{Median: 3, N: 1}, Stat{Median: 2, N: 1}
	if r := ratio(a, b); r != 1.5 {
		t.Errorf("ratio = %v, want 1.5", r)
	}
	if r := ratio(a, Stat{}); r != 0 {
		t.Errorf("ratio with a missing side = %v, want 0", r)
	}
	if s := fmtRatio(0); s != "-" {
		t.Errorf("fmtRatio(0) = %q", s)
	}
	if s := (Stat{Median: 1, Min: 0.5, Max: 2, N: 3}).seconds(); s != "1.000s [0.500s, 2.000s]" {
		t.Errorf("seconds() = %q", s)
	}
	if s := (Stat{}).seconds(); s != "-" {
		t.Errorf("empty seconds() = %q", s)
	}
}

func TestUptimeOf(t *testing.T) {
	for _, c := range []struct {
		re   *regexp.Regexp
		line string
		want float64
	}{
		{kernelRunInit, "[    1.853670] Run /init as init process", 1.85367},
		{serverListen, "[server] httpserver: listening on :8080 uptime=3.73", 3.73},
		{serverFirst, "httpserver: first request uptime=3.85", 3.85},
		{floorStart, "floor: pid1 start uptime 1.357s", 1.357},
		{serverListen, "something else", 0},
	} {
		if got := uptimeOf(c.re, c.line); got != c.want {
			t.Errorf("uptimeOf(%s, %q) = %v, want %v", c.re, c.line, got, c.want)
		}
	}
}

func TestModulePaths(t *testing.T) {
	dir := t.TempDir()
	dep := "kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko\n" +
		"kernel/net/core/failover.ko:\n" +
		"kernel/drivers/block/nbd-x.ko.xz:\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := modulePaths(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"virtio_net": "kernel/drivers/net/virtio_net.ko",
		"failover":   "kernel/net/core/failover.ko",
		"nbd_x":      "kernel/drivers/block/nbd-x.ko.xz",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("modulePaths[%s] = %q, want %q", k, got[k], v)
		}
	}
}

func TestMarkdownEscapesPipes(t *testing.T) {
	tb := newTable("tool", "time")
	tb.add("gzip -d | tar -x", "1s")
	var sb strings.Builder
	tb.markdown(&sb)
	want := "| tool | time |\n| --- | --- |\n| gzip -d \\| tar -x | 1s |\n"
	if sb.String() != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", sb.String(), want)
	}
}
