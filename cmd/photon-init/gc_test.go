package main

import (
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	for _, tc := range []struct {
		name string
		gogc string
		want int // the target in force after tuneGC
	}{
		{"unset: the supervisor's target", "", supervisorGCPercent},
		{"GOGC given: left alone", "100", 100},
		{"GOGC=off: left alone", "off", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100) // as if Go had applied GOGC (100 or unset)
			tuneGC(func(k string) string {
				if k == "GOGC" {
					return tc.gogc
				}
				return ""
			})
			if got := debug.SetGCPercent(100); got != tc.want {
				t.Errorf("GC percent %d, want %d", got, tc.want)
			}
		})
	}
}
