package api

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func TestNewStream(t *testing.T) {
	ctx := context.Background()
	collect := func(st Stream[int]) ([]int, error) {
		var got []int
		for {
			v, err := st.Next(ctx)
			if err != nil {
				return got, err
			}
			got = append(got, v)
		}
	}
	// first only.
	if got, err := collect(NewStream([]int{1, 2}, nil, nil)); len(got) != 2 || got[1] != 2 || err != io.EOF {
		t.Errorf("first only: %v, %v", got, err)
	}
	// first, then live until closed.
	live := make(chan int, 2)
	live <- 3
	live <- 4
	close(live)
	if got, err := collect(NewStream([]int{1}, live, nil)); len(got) != 3 || got[2] != 4 || err != io.EOF {
		t.Errorf("first and live: %v, %v", got, err)
	}
	// Close unblocks Next and calls stop once; ctx ends a blocked Next.
	stops := 0
	st := NewStream[int](nil, make(chan int), func() { stops++ })
	done := make(chan error, 1)
	go func() { _, err := st.Next(ctx); done <- err }()
	time.Sleep(10 * time.Millisecond)
	st.Close()
	st.Close()
	if err := <-done; err != io.EOF || stops != 1 {
		t.Errorf("after Close: %v, %d stops", err, stops)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := NewStream[int](nil, make(chan int), nil).Next(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Next: %v", err)
	}
}
