package power

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
)

// Linux input event constants (linux/input-event-codes.h).
const (
	evKey    = 0x01
	keyPower = 116
)

// inputEvent is struct input_event on 64-bit Linux.
type inputEvent struct {
	Sec, Usec int64
	Type      uint16
	Code      uint16
	Value     int32
}

// FindPowerButtons returns the event device nodes (under devDir, normally
// /dev/input) whose input device can send KEY_POWER: the ACPI "Power Button"
// devices. sysInput is normally /sys/class/input.
func FindPowerButtons(sysInput, devDir string) ([]string, error) {
	entries, err := os.ReadDir(sysInput)
	if err != nil {
		return nil, fmt.Errorf("list input devices: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "event") {
			continue
		}
		caps, err := os.ReadFile(filepath.Join(sysInput, e.Name(), "device/capabilities/key"))
		if err != nil || !hasKey(string(caps), keyPower) {
			continue
		}
		out = append(out, filepath.Join(devDir, e.Name()))
	}
	return out, nil
}

// hasKey reports whether a sysfs key capability bitmap ("10000000000000 0",
// space-separated hex words, most significant first) has bit code set.
func hasKey(bitmap string, code int) bool {
	words := strings.Fields(bitmap)
	const bits = 8 * int(unsafe.Sizeof(uintptr(0)))
	idx := len(words) - 1 - code/bits
	if idx < 0 || idx >= len(words) {
		return false
	}
	var w uint64
	if _, err := fmt.Sscanf(words[idx], "%x", &w); err != nil {
		return false
	}
	return w&(1<<(uint(code)%uint(bits))) != 0
}

// WatchPowerButtons reads every power button found and sends a poweroff
// request when one is pressed. It returns the devices it watches; the
// watching goroutines end with ctx.
func WatchPowerButtons(ctx context.Context, log *slog.Logger, sysInput, devDir string, out chan<- Request) ([]string, error) {
	devs, err := FindPowerButtons(sysInput, devDir)
	if err != nil {
		return nil, err
	}
	for _, dev := range devs {
		f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			log.Warn("power button", "device", dev, "err", err)
			continue
		}
		safe.Go(log, "power button "+dev, func() {
			readButton(ctx, log, f, out)
		})
		context.AfterFunc(ctx, func() { f.Close() })
	}
	return devs, nil
}

// readButton reads events until the file is closed, sending a request on
// every KEY_POWER press.
func readButton(ctx context.Context, log *slog.Logger, f *os.File, out chan<- Request) {
	defer f.Close()
	for {
		var ev inputEvent
		if err := binary.Read(f, binary.NativeEndian, &ev); err != nil {
			if ctx.Err() == nil {
				log.Warn("power button: read", "device", f.Name(), "err", err)
			}
			return
		}
		if ev.Type == evKey && ev.Code == keyPower && ev.Value == 1 {
			select {
			case out <- Request{Action: Poweroff, Reason: "power button"}:
			case <-ctx.Done():
				return
			}
		}
	}
}
