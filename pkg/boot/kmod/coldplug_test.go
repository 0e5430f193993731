package kmod

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSysfs builds a sysfs-like tree and returns its root.
func fakeSysfs(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range files {
		addSysfsFile(t, root, rel, content)
	}
	return root
}

func addSysfsFile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Error(err)
		return
	}
	if err := os.WriteFile(p, []byte(content), 0o444); err != nil {
		t.Error(err)
	}
}

// fakeUevents is a UeventSource fed by the test.
type fakeUevents struct {
	mu     sync.Mutex
	queued []string
	lose   bool // the next Modaliases reports lost events
	closed bool
	ready  chan struct{} // has a token while events wait
}

func (f *fakeUevents) add(modalias string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queued = append(f.queued, modalias)
	f.signal()
}

// signal marks events waiting. f.mu is held.
func (f *fakeUevents) signal() {
	if f.ready == nil {
		f.ready = make(chan struct{}, 1)
	}
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

func (f *fakeUevents) Wait(ctx context.Context) error {
	f.mu.Lock()
	if f.ready == nil {
		f.ready = make(chan struct{}, 1)
	}
	ready := f.ready
	f.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeUevents) Modaliases() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.queued
	f.queued = nil
	if f.lose {
		f.lose = false
		return out, ErrUeventsLost
	}
	return out, nil
}

func (f *fakeUevents) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// TestColdplug runs the same machine through each way Coldplug learns of
// the devices that loaded drivers create: walking sysfs again, uevents,
// and uevents that were lost (a walk catches up).
func TestColdplug(t *testing.T) {
	tests := []struct {
		name   string
		events bool // a UeventSource is available
		lose   bool // its first answer reports lost events
		walks  string
	}{
		{name: "walks", walks: "walks=3"},
		{name: "uevents", events: true, walks: "walks=1"},
		{name: "uevents lost", events: true, lose: true, walks: "walks=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testColdplugMachine(t, tt.events, tt.lose, tt.walks)
		})
	}
}

func testColdplugMachine(t *testing.T, withEvents, lose bool, wantWalks string) {
	// The fixture's modules.dep, with a module file for each line.
	dep, err := os.ReadFile(filepath.Join(fixture, DepFile))
	if err != nil {
		t.Fatal(err)
	}
	extra := map[string]string{}
	for _, f := range []string{AliasFile, SoftdepFile, BuiltinFile} {
		data, err := os.ReadFile(filepath.Join(fixture, f))
		if err != nil {
			t.Fatal(err)
		}
		extra[f] = string(data)
	}
	dir := writeModuleTree(t, string(dep), extra)

	sys := fakeSysfs(t, map[string]string{
		"devices/pci0000:00/0000:00:01.0/modalias":        "pci:v00001AF4d00001041sv00001AF4sd00001041bc02sc00i00\n",
		"devices/pci0000:00/0000:00:02.0/modalias":        "pci:v00008086d00000D57sv00000000sd00000000bc06sc00i00\n", // no driver
		"devices/LNXSYSTM:00/LNXPWRBN:00/modalias":        "acpi:LNXPWRBN:\n",
		"devices/platform/serial8250/modalias":            "platform:serial8250\n",
		"devices/system/cpu/modalias":                     "cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0093,0095\n", // no 0094: no crc32c_intel
		"devices/virtual/misc/empty/modalias":             "\n",
		"outside/virtio0/modalias":                        "virtio:d00000002v00001AF4\n", // only reachable through a symlink
		"devices/pci0000:00/0000:00:01.0/driver/.keep":    "",
		"devices/pci0000:00/0000:00:01.0/subsystem/.keep": "",
	})
	// Symlinks that must not be followed: one into a tree with a device
	// (virtio_blk would load), one looping back up.
	if err := os.Symlink(filepath.Join(sys, "outside"), filepath.Join(sys, "devices/platform/link-to-outside")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../..", filepath.Join(sys, "devices/platform/serial8250/loop")); err != nil {
		t.Fatal(err)
	}

	events := &fakeUevents{lose: lose}
	// A device appears in sysfs and, as the kernel does, as an event.
	addDevice := func(rel, modalias string) {
		addSysfsFile(t, sys, rel, modalias+"\n")
		events.add(modalias)
	}
	k := &fakeKernel{}
	k.after = func(image string) {
		switch image {
		case "virtio_pci": // the PCI driver creates the virtio device
			addDevice("devices/pci0000:00/0000:00:01.0/virtio0/modalias", "virtio:d00000001v00001AF4")
		case "button": // the ACPI button driver registers an input device
			addDevice("devices/LNXSYSTM:00/LNXPWRBN:00/input/input0/modalias", "input:b0019v0000p0001e0000-e0,1,k74,ramlsfw")
		}
	}
	l, logs := newTestLoader(t, dir, k)
	if withEvents {
		l.Uevents = func() (UeventSource, error) { return events, nil }
	}
	rs, err := l.Coldplug(context.Background(), sys)
	if err != nil {
		t.Fatalf("Coldplug: %v", err)
	}
	loaded := map[string]bool{}
	for _, r := range rs {
		if r.Status != Loaded {
			t.Errorf("%s: %s", r.Name, r.Status)
		}
		loaded[r.Name] = true
	}
	for _, m := range []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "button", "failover", "net_failover", "virtio_net", "evdev"} {
		if !loaded[m] {
			t.Errorf("%s not loaded; results %q", m, statuses(rs))
		}
	}
	if len(rs) != 10 {
		t.Errorf("results = %q, want exactly 10 modules", statuses(rs))
	}
	calls := k.Calls()
	if len(calls) != 10 {
		t.Errorf("kernel calls = %q, want each module once", calls)
	}
	if slices.Index(calls, "finit:virtio_pci") > slices.Index(calls, "finit:virtio_net") || slices.Index(calls, "finit:button") > slices.Index(calls, "finit:evdev") {
		t.Errorf("kernel calls out of order: %q", calls)
	}
	if loaded["virtio_blk"] {
		t.Error("virtio_blk loaded: the walk followed a symlink")
	}
	if !strings.Contains(logs.String(), "kmod: loaded virtio_net") {
		t.Errorf("log lacks kmod: loaded virtio_net:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "passes=3") {
		t.Errorf("want 3 passes (pci, then virtio and input, then nothing new):\n%s", logs)
	}
	if !strings.Contains(logs.String(), wantWalks+" ") {
		t.Errorf("want %s:\n%s", wantWalks, logs)
	}
	if withEvents && !events.closed {
		t.Error("the uevent subscription was not closed")
	}
}

func TestAddedModalias(t *testing.T) {
	tests := []struct {
		msg, want string
	}{
		{"add@/devices/pci0000:00/0000:00:03.0/virtio0\x00ACTION=add\x00DEVPATH=/devices/pci0000:00/0000:00:03.0/virtio0\x00SUBSYSTEM=virtio\x00MODALIAS=virtio:d00000001v00001AF4\x00SEQNUM=1200\x00", "virtio:d00000001v00001AF4"},
		{"remove@/devices/x\x00ACTION=remove\x00MODALIAS=virtio:d00000001v00001AF4\x00", ""},
		{"bind@/devices/x\x00ACTION=bind\x00MODALIAS=pci:v1\x00", ""},
		{"add@/devices/virtual/net/lo\x00ACTION=add\x00SUBSYSTEM=net\x00", ""},
		{"libudev\x00\xfe\xed\xca\xfe", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := addedModalias([]byte(tt.msg)); got != tt.want {
			t.Errorf("addedModalias(%q) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}

// TestKernelUevents subscribes to the host kernel's uevents (nothing is
// triggered: a test must not make the host's devices announce themselves)
// and drains what is queued without waiting.
func TestKernelUevents(t *testing.T) {
	src, err := OpenKernelUevents()
	if err != nil {
		t.Skipf("no uevent socket here: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := src.Modaliases()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, ErrUeventsLost) {
			t.Errorf("Modaliases: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Modaliases waited for events")
	}
	// Wait parks until events come, or its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := src.Wait(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait: %v", err)
	}
	if err := src.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestColdplugReportsFailuresAndGoesOn(t *testing.T) {
	dir := writeModuleTree(t, "kernel/a.ko:\nkernel/b.ko:\n", map[string]string{
		AliasFile: "alias dev:a* a\nalias dev:b* b\n",
	})
	sys := fakeSysfs(t, map[string]string{
		"devices/x/modalias": "dev:a1\n",
		"devices/y/modalias": "dev:b1\n",
		"devices/z/modalias": "dev:a2\n",
	})
	k := &fakeKernel{fail: map[string]error{"a": os.ErrInvalid}}
	l, _ := newTestLoader(t, dir, k)
	rs, err := l.Coldplug(context.Background(), sys)
	if err == nil || !strings.Contains(err.Error(), "a.ko") {
		t.Errorf("err = %v, want the failure of a.ko", err)
	}
	got := statuses(rs)
	slices.Sort(got)
	if !slices.Equal(got, []string{"a=failed", "b=loaded"}) {
		t.Errorf("results = %q", got)
	}
	if _, err := l.Coldplug(context.Background(), filepath.Join(sys, "missing")); err == nil {
		t.Error("Coldplug of a missing sysfs: want an error")
	}
}

// TestFollow: after coldplug, devices the kernel adds get their modules
// (through the Loader the callback gives at that moment), lost events make
// it walk sysfs, and it ends with its context, closing the subscription.
func TestFollow(t *testing.T) {
	dir := writeModuleTree(t, "kernel/a.ko:\nkernel/b.ko:\nkernel/c.ko:\n", map[string]string{
		AliasFile: "alias dev:a* a\nalias dev:b* b\nalias dev:c* c\n",
	})
	sys := fakeSysfs(t, map[string]string{"devices/x/modalias": "dev:a1\n"})
	k := &fakeKernel{}
	l, logs := newTestLoader(t, dir, k)
	events := &fakeUevents{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Follow(ctx, events, sys, func() *Loader { return l }, l.log()) }()

	waitCalls := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !slices.Equal(k.Calls(), want) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := k.Calls(); !slices.Equal(got, want) {
			t.Fatalf("kernel calls %q, want %q", got, want)
		}
	}
	events.add("dev:b1") // a device plugged in
	waitCalls([]string{"finit:b"})
	events.mu.Lock()
	events.lose = true // the next batch reports lost events: a walk finds dev:a1
	events.signal()
	events.mu.Unlock()
	waitCalls([]string{"finit:b", "finit:a"})
	events.add("dev:zz") // no module for it
	events.add("dev:c9")
	waitCalls([]string{"finit:b", "finit:a", "finit:c"})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Follow after its context ended: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not end with its context")
	}
	if !events.closed {
		t.Error("the subscription was not closed")
	}
	if !strings.Contains(logs.String(), "hotplug events lost") {
		t.Errorf("no word of the lost events:\n%s", logs)
	}
}
