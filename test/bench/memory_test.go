package main

import (
	"math"
	"testing"
)

func TestPerContainer(t *testing.T) {
	anon := func(mib float64) Stat { return Stat{Median: mib, Min: mib, Max: mib, N: 3} }
	for _, tc := range []struct {
		name  string
		stats []MemoryStat
		want  []float64 // KiB per container, in order
	}{
		{"none", nil, nil},
		{"slope against the smallest count",
			[]MemoryStat{{Containers: 1, Anon: anon(4.0)}, {Containers: 10, Anon: anon(5.8)}, {Containers: 50, Anon: anon(16.25)}},
			[]float64{0, 204.8, 256.0}},
		{"smallest count not first",
			[]MemoryStat{{Containers: 50, Anon: anon(16.25)}, {Containers: 1, Anon: anon(4.0)}},
			[]float64{256.0, 0}},
		{"a count without samples gets nothing",
			[]MemoryStat{{Containers: 1, Anon: anon(4.0)}, {Containers: 10}},
			[]float64{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			perContainer(tc.stats)
			for i, s := range tc.stats {
				if math.Abs(s.AnonPerContainerKiB-tc.want[i]) > 0.01 {
					t.Errorf("%d containers: %.2f KiB per container, want %.2f", s.Containers, s.AnonPerContainerKiB, tc.want[i])
				}
			}
		})
	}
}
