package engine

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestFollowResolvConf: a change of the machine's resolv.conf is written
// into every container's copy, in place (the same inode, so the bind mount
// in the container sees it).
func TestFollowResolvConf(t *testing.T) {
	root := t.TempDir()
	e := New(PathsUnder(root))
	var files []string
	for _, name := range []string{"web", "db"} {
		f := filepath.Join(e.paths.Data, "containers", name, "resolv.conf")
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("# none yet\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	inode := func(f string) uint64 {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	before := inode(files[0])

	var mu sync.Mutex
	content, changed := []byte("# none yet\n"), make(chan struct{})
	asked := make(chan struct{}, 1)
	current := func() ([]byte, <-chan struct{}) {
		mu.Lock()
		defer mu.Unlock()
		select {
		case asked <- struct{}{}:
		default:
		}
		return content, changed
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.followResolvConf(ctx, slog.New(slog.DiscardHandler), current)

	<-asked // it holds the channel of the first change
	const lease = "nameserver 10.0.2.3\nsearch example.com\n"
	mu.Lock()
	content = []byte(lease)
	close(changed)
	changed = make(chan struct{})
	mu.Unlock()

	deadline := time.Now().Add(5 * time.Second)
	for _, f := range files {
		for {
			data, _ := os.ReadFile(f)
			if string(data) == lease {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still holds %q", f, data)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if after := inode(files[0]); after != before {
		t.Errorf("resolv.conf was replaced (inode %d → %d), not rewritten in place", before, after)
	}
}
