package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// keyedLocks serialises work on one key (a layer digest, an image record)
// between the goroutines of this process, with a context-aware wait, and
// between processes sharing the store, with flock(2) on ROOT/locks/KEY.
type keyedLocks struct {
	dir string
	mu  sync.Mutex
	m   map[string]chan struct{}
}

func newKeyedLocks(dir string) *keyedLocks {
	return &keyedLocks{dir: dir, m: map[string]chan struct{}{}}
}

// lock takes key's lock and returns its release.
func (k *keyedLocks) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	ch, ok := k.m[key]
	if !ok {
		ch = make(chan struct{}, 1)
		k.m[key] = ch
	}
	k.mu.Unlock()
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	name := filepath.Join(k.dir, strings.NewReplacer(":", "-", "/", "-").Replace(key)+".lock")
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		<-ch
		return nil, fmt.Errorf("lock %s: %w", key, err)
	}
	// Another process holding the lock is unpacking the same layer; the
	// wait is as long as that takes.
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		<-ch
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return func() {
		f.Close() // releases the flock
		<-ch
	}, nil
}
