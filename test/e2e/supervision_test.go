package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/photon-init/photon-init/test/vm"
)

// busyboxApplets are the commands the supervision test's containers use.
var busyboxApplets = []string{"sh", "sleep", "echo", "cat", "cp", "rm", "true", "false"}

// busyboxRootfs writes a root filesystem holding the static busybox and
// links to the applets the test uses under dir.
func busyboxRootfs(t *testing.T, dir string) {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox (busybox-static) is not installed; scripts/deps.sh installs it")
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, bb, filepath.Join(bin, "busybox"))
	for _, a := range busyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(bin, a)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSupervision boots a VM with containers that depend on each other, a
// crash-looping one and a "controller" that adds, edits and removes a
// manifest while the machine runs (through a bind mount of
// /etc/photon/containers), then presses the power button:
//   - db (healthy) → migrate (one-shot) → app start in that order;
//   - crasher exits after a second and is restarted after a backoff;
//   - late appears, is restarted with its new text, and is stopped when
//     its manifest goes;
//   - at shutdown app stops before db, each within its grace period.
func TestSupervision(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("boots a VM")
	}
	overlay := t.TempDir()
	busyboxRootfs(t, filepath.Join(overlay, "images", "bb"))
	const img = "image: rootfs:/images/bb\nstop_grace_period: 1s\nnetwork_mode: none\n"
	files := vm.Overlay{
		"etc/photon/containers/db.yaml": img +
			"command: [sh, -c, 'echo db up; exec sleep 3600']\n" +
			"healthcheck:\n  test: [CMD, true]\n  interval: 1s\n  start_interval: 200ms\n",
		"etc/photon/containers/migrate.yaml": img +
			"command: [sh, -c, 'echo migrating; sleep 1; echo migrated']\n" +
			"restart: \"no\"\n" +
			"depends_on:\n  db:\n    condition: service_healthy\n",
		"etc/photon/containers/app.yaml": img +
			"command: [sh, -c, 'echo app up; exec sleep 3600']\n" +
			"depends_on:\n  migrate:\n    condition: service_completed_successfully\n  db:\n    condition: service_started\n",
		"etc/photon/containers/crasher.yaml": img +
			"command: [sh, -c, 'echo crasher run; sleep 1; exit 3']\n" +
			"restart: always\n",
		"etc/photon/containers/controller.yaml": img +
			"volumes: [\"/etc/photon/containers:/manifests\", \"/templates:/templates:ro\"]\n" +
			"restart: \"no\"\n" +
			"command: [sh, -c, 'sleep 2; cp /templates/late1.yaml /manifests/late.yaml; sleep 5; " +
			"cp /templates/late2.yaml /manifests/late.yaml; sleep 5; rm /manifests/late.yaml; echo controller done']\n",
		"templates/late1.yaml": img + "command: [sh, -c, 'echo late v1; exec sleep 3600']\n",
		"templates/late2.yaml": img + "command: [sh, -c, 'echo late v2; exec sleep 3600']\n",
	}
	host := vm.HostT(t)
	initrd := vm.InitramfsT(t, host, files, vm.BuildOptions{Compress: "none", OverlayDir: overlay})
	v := vm.StartT(t, vm.Config{Host: host, Machine: vm.Q35, Initramfs: initrd, MemoryMB: 768})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	must := func(re string) vm.Line {
		t.Helper()
		l, err := waitFind(ctx, v, regexp.MustCompile(re))
		if err != nil {
			t.Fatalf("%v\n%s", err, v.ConsoleTail(60))
		}
		return l
	}
	// Dependency order.
	db := must(`^\[db\] db up`)
	migrated := must(`^\[migrate\] migrated`)
	app := must(`^\[app\] app up`)
	if !(db.At < migrated.At && migrated.At < app.At) {
		t.Errorf("start order: db %v, migrate done %v, app %v; want db < migrate < app", db.At, migrated.At, app.At)
	}
	must(`container migrate: exited \(exit 0\)`)

	// A crash loop is restarted after a backoff.
	must(`container crasher: backoff \(backing off, next start in [0-9.]+m?s, last exit 3\)`)
	if err := waitCount(ctx, v, regexp.MustCompile(`^\[crasher\] crasher run`), 3); err != nil {
		t.Fatalf("crasher was not restarted: %v", err)
	}

	// Hot reload: added, changed, removed.
	must(`^\[late\] late v1`)
	must(`^\[late\] late v2`)
	must(`^\[controller\] controller done`)
	must(`container late: (stopped|removed)`)

	// Reverse order at shutdown, within the grace periods.
	if err := v.Powerdown(); err != nil {
		t.Fatal(err)
	}
	start := must(`shutdown: stop-containers`)
	appStopped := must(`container app: stopped`)
	dbStopped := must(`container db: stopped`)
	next := must(`shutdown: (release-dhcp|stop-processes)`)
	if appStopped.At > dbStopped.At {
		t.Errorf("db stopped (%v) before app (%v), which depends on it", dbStopped.At, appStopped.At)
	}
	if took := next.At - start.At; took > 6*time.Second {
		t.Errorf("stopping the containers took %v; every grace period is 1s", took)
	}
	must(`reboot: Power down`)
	for _, l := range v.Lines() {
		if strings.Contains(l.Text, "ERROR") {
			t.Errorf("unexpected error on the console: %s", l.Text)
		}
	}
}

// waitCount waits until at least n console lines match re.
func waitCount(ctx context.Context, v *vm.VM, re *regexp.Regexp, n int) error {
	for {
		count := 0
		for _, l := range v.Lines() {
			if re.MatchString(l.Text) {
				count++
			}
		}
		if count >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
