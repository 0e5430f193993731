package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseCPUInfoKHz(t *testing.T) {
	in := "processor\t: 0\nmodel name\t: Some CPU\ncpu MHz\t\t: 2596.134\ncache size\t: 512 KB\ncpu MHz\t\t: 1.0\n"
	got, err := parseCPUInfoKHz(strings.NewReader(in))
	if err != nil || got != 2596134 {
		t.Fatalf("parseCPUInfoKHz = %d, %v; want 2596134", got, err)
	}
	got, err = parseCPUInfoKHz(strings.NewReader("processor : 0\n"))
	if err != nil || got != 0 {
		t.Fatalf("without cpu MHz: %d, %v; want 0, nil", got, err)
	}
}

func TestPayloadOffsets(t *testing.T) {
	xz := []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	img := append(append(append([]byte("header"), xz...), "junk"...), xz...)
	got := payloadOffsets(img, xz)
	if len(got) != 2 || got[0] != 6 || got[1] != 16 {
		t.Fatalf("payloadOffsets = %v, want [6 16]", got)
	}
}

func TestExtractVMLinuxFromSyntheticImage(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("xz not installed")
	}
	// A stand-in "kernel": any x86-64 ELF file will do, e.g. the test
	// binary itself, xz-compressed behind a header and followed by
	// trailing data, as in a bzImage.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	elfData, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("xz", "-0", "-c")
	cmd.Stdin = bytes.NewReader(elfData)
	compressed, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz: %v", err)
	}
	dir := t.TempDir()
	image := filepath.Join(dir, "vmlinuz-test")
	// A false magic first: the extractor must try the next one.
	data := append([]byte("boot sector\xfd7zXZ\x00not xz"), compressed...)
	data = append(data, []byte("trailing setup data")...)
	if err := os.WriteFile(image, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	out, err := ExtractVMLinux(image, cache)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, elfData) {
		t.Fatalf("extracted %d bytes, want the %d-byte original", len(got), len(elfData))
	}
	again, err := ExtractVMLinux(image, cache)
	if err != nil || again != out {
		t.Fatalf("second call = %q, %v; want the cached %q", again, err, out)
	}
	if _, err := ExtractVMLinux(self, cache); err != nil {
		t.Fatalf("an ELF image is used as is: %v", err)
	}
}

func TestKernelRelease(t *testing.T) {
	if got := kernelRelease("/boot/vmlinuz-6.1.0-56-amd64"); got != "6.1.0-56-amd64" {
		t.Fatalf("kernelRelease = %q", got)
	}
	if got := kernelRelease("/tmp/bzImage"); got != "" {
		t.Fatalf("kernelRelease = %q, want empty", got)
	}
}

func TestParseBootComplete(t *testing.T) {
	line := "[    2.001] photon-init: boot complete: 1.052s since kernel start, 0.640s since PID-1 start"
	bt, ok := ParseBootComplete(line)
	if !ok || bt.SinceKernel != 1052*time.Millisecond || bt.SincePID1 != 640*time.Millisecond {
		t.Fatalf("ParseBootComplete = %+v, %v", bt, ok)
	}
	if _, ok := ParseBootComplete("boot complete"); ok {
		t.Fatal("parsed a line without durations")
	}
	up, ok := ParseUptime(PhotonStartUptime, "photon-init v0.1.0 starting as PID 1 (uptime 0.612s)")
	if !ok || up != 612*time.Millisecond {
		t.Fatalf("ParseUptime = %v, %v", up, ok)
	}
	if m := PhotonStart.FindStringSubmatch("photon-init v0.1.0-3-gabc starting as PID 1"); m == nil || m[1] != "v0.1.0-3-gabc" {
		t.Fatalf("PhotonStart = %q", m)
	}
}

func TestConsoleLinesAndWaiting(t *testing.T) {
	var raw bytes.Buffer
	c := newConsole(time.Now(), &raw)
	go func() {
		for _, chunk := range []string{"first\r\nsec", "ond\r\n", "third", " line\n", "no newline"} {
			c.Write([]byte(chunk))
			time.Sleep(time.Millisecond)
		}
		c.close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	re := regexp.MustCompile(`^third line$`)
	for {
		i, l, changed, closed := c.find(re, 0)
		if i >= 0 {
			if i != 2 || l.Text != "third line" {
				t.Fatalf("found %d %q", i, l.Text)
			}
			break
		}
		if closed {
			t.Fatal("console closed before the line")
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-changed:
		}
	}
	for {
		_, _, changed, closed := c.find(re, 0)
		if closed {
			break
		}
		<-changed
	}
	got := joinLines(c.snapshot())
	if want := "first\nsecond\nthird line\nno newline\n"; got != want {
		t.Fatalf("lines = %q, want %q", got, want)
	}
	if !strings.Contains(raw.String(), "first\r\n") {
		t.Fatalf("raw log lost the carriage return: %q", raw.String())
	}
}

func TestCPIOWithSystemCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	var buf bytes.Buffer
	c := NewCPIO(&buf)
	c.Dir("dev", 0o755)
	c.CharDev("dev/console", 0o600, 5, 1)
	c.File("init", 0o755, []byte("#!/bin/sh\necho hi\n"))
	c.File("etc", 0o644, []byte("x")) // odd lengths exercise the padding
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	listing := string(out)
	for _, want := range []string{"drwxr-xr-x", " dev\n", "crw-------", "5,", "dev/console", "-rwxr-xr-x", " init\n", " etc\n"} {
		if !strings.Contains(listing, want) {
			t.Errorf("listing lacks %q:\n%s", want, listing)
		}
	}
	dup := NewCPIO(&bytes.Buffer{})
	dup.Dir("a", 0o755)
	dup.Dir("a", 0o755)
	if err := dup.Close(); err == nil {
		t.Error("a duplicate entry was accepted")
	}
}

// fakeQMP serves one QMP connection on a unix socket the way QEMU does:
// greeting, capabilities, a command with a reply, an event.
func fakeQMP(t *testing.T, path string) {
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		conn.Write([]byte(`{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": ["oob"]}}` + "\n"))
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var req struct {
				Execute   string          `json:"execute"`
				ID        json.RawMessage `json:"id"`
				Arguments json.RawMessage `json:"arguments"`
			}
			if err := json.Unmarshal(line, &req); err != nil {
				return
			}
			switch req.Execute {
			case "system_powerdown":
				conn.Write([]byte(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "POWERDOWN"}` + "\n"))
				conn.Write([]byte(`{"return": {}, "id": ` + string(req.ID) + "}\n"))
			case "send-key":
				conn.Write([]byte(`{"return": ` + string(req.Arguments) + `, "id": ` + string(req.ID) + "}\n"))
			case "qmp_capabilities":
				conn.Write([]byte(`{"return": {}, "id": ` + string(req.ID) + "}\n"))
			default:
				conn.Write([]byte(`{"error": {"class": "CommandNotFound", "desc": "no ` + req.Execute + `"}, "id": ` + string(req.ID) + "}\n"))
			}
		}
	}()
}

func TestQMPClient(t *testing.T) {
	dir, err := os.MkdirTemp("", "qmp-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "qmp.sock")
	fakeQMP(t, sock)
	c, err := dialQMP(sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	v := &VM{qmp: c}
	if err := v.Powerdown(); err != nil {
		t.Fatal(err)
	}
	if ev := v.Events(); len(ev) != 1 || ev[0].Name != "POWERDOWN" {
		t.Fatalf("events = %+v", ev)
	}
	ret, err := v.QMP("send-key", map[string]any{"keys": []map[string]string{{"type": "qcode", "data": "ctrl"}}})
	if err != nil || !strings.Contains(string(ret), `"ctrl"`) {
		t.Fatalf("send-key = %s, %v", ret, err)
	}
	_, err = v.QMP("bogus", nil)
	if qe, ok := err.(*QMPError); !ok || qe.Class != "CommandNotFound" {
		t.Fatalf("bogus command: %v", err)
	}
	if err := v.SendKeys("ctrl--delete"); err == nil {
		t.Fatal("an empty key was accepted")
	}
}

func TestAcquireSlot(t *testing.T) {
	dir := t.TempDir()
	r1, err := AcquireSlot(context.Background(), dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := AcquireSlot(ctx, dir, 1); err == nil {
		t.Fatal("a second holder got the only slot")
	}
	r1()
	r2, err := AcquireSlot(context.Background(), dir, 1)
	if err != nil {
		t.Fatalf("slot not free after release: %v", err)
	}
	r2()
}

// TestBaselineBoots checks the harness itself, independently of
// photon-init: the baseline init boots from a minimal initramfs on each
// machine type, prints its lines, and powers off; QEMU exits.
func TestBaselineBoots(t *testing.T) {
	host := HostT(t)
	dir := t.TempDir()
	init := filepath.Join(dir, "baseline-init")
	if err := BuildBaseline(context.Background(), host.Repo, init); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "initramfs.cpio")
	if err := WriteMinimalInitramfs(img, init); err != nil {
		t.Fatal(err)
	}
	for _, m := range Machines() {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			v := StartT(t, Config{Host: host, Machine: m, Initramfs: img, GuestPorts: []int{8080}})
			if v.HostPort(8080) == 0 {
				t.Error("no host port forwarded to guest port 8080")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			start, err := v.WaitForLine(ctx, BaselineStartUptime)
			if err != nil {
				t.Fatal(err)
			}
			done, err := v.WaitForLine(ctx, BootComplete)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			up, _ := ParseUptime(BaselineStartUptime, start.Text)
			bt, ok := ParseBootComplete(done.Text)
			if !ok || bt.SinceKernel < up {
				t.Fatalf("boot complete %+v before PID-1 start %v", bt, up)
			}
			if _, ok := v.Find(regexp.MustCompile(`reboot: Power down`)); !ok {
				t.Error("the kernel did not report powering down")
			}
			var shutdown bool
			for _, e := range v.Events() {
				shutdown = shutdown || (e.Name == "SHUTDOWN" && strings.Contains(string(e.Data), "guest-shutdown"))
			}
			t.Logf("%s (%s): PID 1 at uptime %v, boot complete at uptime %v, %v after QEMU started; SHUTDOWN guest-shutdown event: %v",
				m, host.Accel, up, bt.SinceKernel, done.At.Round(time.Millisecond), shutdown)
		})
	}
}
