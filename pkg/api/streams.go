package api

import (
	"context"
	"io"
	"sync"
)

// NewStream returns a Stream for implementations of Containers: it gives
// the values of first, then those received from live until live is closed
// (a nil live ends the stream after first). Close calls stop (once, if not
// nil), which should end the producer's subscription, and makes a blocked
// Next return io.EOF. Keep live's buffer bounded: when a slow client makes
// it full, the producer should drop, not wait.
func NewStream[T any](first []T, live <-chan T, stop func()) Stream[T] {
	return &chanStream[T]{first: first, live: live, stop: stop, closed: make(chan struct{})}
}

type chanStream[T any] struct {
	first  []T
	live   <-chan T
	stop   func()
	once   sync.Once
	closed chan struct{}
}

func (s *chanStream[T]) Next(ctx context.Context) (T, error) {
	var zero T
	select {
	case <-s.closed:
		return zero, io.EOF
	default:
	}
	if len(s.first) > 0 {
		v := s.first[0]
		s.first = s.first[1:]
		return v, nil
	}
	if s.live == nil {
		return zero, io.EOF
	}
	select {
	case v, ok := <-s.live:
		if !ok {
			return zero, io.EOF
		}
		return v, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-s.closed:
		return zero, io.EOF
	}
}

func (s *chanStream[T]) Close() error {
	s.once.Do(func() {
		close(s.closed)
		if s.stop != nil {
			s.stop()
		}
	})
	return nil
}
