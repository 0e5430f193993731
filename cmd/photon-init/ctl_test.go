package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/photon-init/photon-init/pkg/api"
)

// envAsPhotonctl makes the test binary run as photon-init with its real
// argv[0], so that a symlink named photonctl is photonctl.
const envAsPhotonctl = "PHOTON_TEST_AS_PHOTONCTL"

func init() {
	if os.Getenv(envAsPhotonctl) != "" {
		os.Exit(run(os.Args))
	}
}

// TestPhotonctl runs the binary as photonctl (a symlink) and as
// "photon-init ctl" against a control socket.
func TestPhotonctl(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "photon", "photon.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(api.Options{Version: "v-test"}).ListenAndServe(ctx, sock) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no socket")
		}
		time.Sleep(10 * time.Millisecond)
	}
	link := filepath.Join(dir, "photonctl")
	if err := os.Symlink(os.Args[0], link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		argv   []string
		env    string
		code   int
		stdout string
		stderr string
	}{
		{"photonctl version", []string{link, "version"}, envAsPhotonctl, 0, "photonctl dev\nserver: photon-init v-test (API v1", ""},
		{"photonctl without a verb", []string{link}, envAsPhotonctl, 2, "", "usage: photonctl"},
		{"photonctl ps without an engine", []string{link, "ps"}, envAsPhotonctl, 1, "", "photonctl: the container engine is not running"},
		{"photonctl timeline without a machine", []string{link, "timeline"}, envAsPhotonctl, 1, "", "no boot timeline"},
		{"photon-init ctl version", []string{os.Args[0], "ctl", "version"}, envAsMain, 0, "server: photon-init v-test", ""},
		{"photon-init ctl bad verb", []string{os.Args[0], "ctl", "nope"}, envAsMain, 2, "", `photon-init ctl: unknown verb "nope"`},
		{"photon-init ctl completion", []string{os.Args[0], "ctl", "completion", "bash"}, envAsMain, 0, "complete -F _photonctl photonctl", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(tc.argv[0], tc.argv[1:]...)
			cmd.Env = append(os.Environ(), tc.env+"=1", api.SocketEnv+"="+sock)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

// TestBuildPhotonctl: the initramfs has /bin/photonctl → /init and the
// bash completion script.
func TestBuildPhotonctl(t *testing.T) {
	initBin, _ := buildFixture(t)
	out := filepath.Join(t.TempDir(), "initramfs.img")
	if code, _, stderr := runBuildT(t, "-o", out, "--init", initBin); code != 0 {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	list := cpioList(t, out, true)
	for _, want := range []string{"bin/photonctl -> /init", "usr/share/bash-completion/completions/photonctl"} {
		if !strings.Contains(list, want) {
			t.Errorf("archive lacks %q:\n%s", want, list)
		}
	}
}
