package manifest

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		want unix.Signal
		err  bool
	}{
		{in: "SIGTERM", want: unix.SIGTERM},
		{in: "TERM", want: unix.SIGTERM},
		{in: "sigquit", want: unix.SIGQUIT},
		{in: "int", want: unix.SIGINT},
		{in: "9", want: unix.SIGKILL},
		{in: "64", want: 64},
		{in: "RTMIN", want: 34},
		{in: "SIGRTMIN+3", want: 37},
		{in: "RTMAX-1", want: 63},
		{in: "0", err: true},
		{in: "65", err: true},
		{in: "RTMIN+31", err: true},
		{in: "RTMIN-1", err: true},
		{in: "SIGFOO", err: true},
		{in: "", err: true},
	}
	for _, tt := range tests {
		got, err := ParseSignal(tt.in)
		if (err != nil) != tt.err || (!tt.err && got != tt.want) {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParseRestart(t *testing.T) {
	tests := []struct {
		in     string
		policy string
		max    int
		err    bool
	}{
		{in: "", policy: RestartNo},
		{in: "no", policy: RestartNo},
		{in: "always", policy: RestartAlways},
		{in: "unless-stopped", policy: RestartUnlessStopped},
		{in: "on-failure", policy: RestartOnFailure},
		{in: "on-failure:3", policy: RestartOnFailure, max: 3},
		{in: "on-failure:-1", err: true},
		{in: "always:3", err: true},
		{in: "never", err: true},
	}
	for _, tt := range tests {
		p, m, err := ParseRestart(tt.in)
		if (err != nil) != tt.err || p != tt.policy || m != tt.max {
			t.Errorf("ParseRestart(%q) = %q, %d, %v", tt.in, p, m, err)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{in: "1024", want: 1024},
		{in: "1024k", want: 1 << 20},
		{in: "512m", want: 512 << 20},
		{in: "512M", want: 512 << 20},
		{in: "1g", want: 1 << 30},
		{in: "1gb", want: 1 << 30},
		{in: "1GiB", want: 1 << 30},
		{in: "1.5g", want: 3 << 29},
		{in: "12x", err: true},
		{in: "-1", err: true},
		{in: "m", err: true},
		{in: "99999999999p", err: true},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{in: "10s", want: 10 * time.Second},
		{in: "1m30s", want: 90 * time.Second},
		{in: "500ms", want: 500 * time.Millisecond},
		{in: "1h5m", want: 65 * time.Minute},
		{in: "0s"},
		{in: "10", err: true},
		{in: "1.5", err: true},
		{in: "1d", err: true},
		{in: "-1s", err: true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestParseTmpfs(t *testing.T) {
	v, rest, err := ParseTmpfs("/run/x/:size=1m,mode=0700,uid=1000,noexec,ro")
	if err != nil {
		t.Fatal(err)
	}
	if v.Type != VolumeTmpfs || v.Target != "/run/x" || v.TmpfsSize != 1<<20 || v.TmpfsMode != 0o700 || !v.ReadOnly ||
		len(rest) != 2 || rest[0] != "uid=1000" || rest[1] != "noexec" {
		t.Errorf("ParseTmpfs = %+v, %q", v, rest)
	}
	if got := formatTmpfs(v, rest); got != "/run/x:size=1048576,mode=700,ro,uid=1000,noexec" {
		t.Errorf("formatTmpfs = %q", got)
	}
	for _, bad := range []string{"tmp", "/", "/tmp:size", "/tmp:uid=x", "/tmp:mode=8", "/tmp:bind"} {
		if _, _, err := ParseTmpfs(bad); err == nil {
			t.Errorf("ParseTmpfs(%q) accepted", bad)
		}
	}
}

func TestValidName(t *testing.T) {
	long := "a123456789012345678901234567890123456789012345678901234567890bc"
	for name, want := range map[string]bool{
		"web": true, "Web_1.a-b": true, "0": true, long: true, long + "d": false,
		"": false, "-a": false, "_a": false, ".a": false, "a b": false, "a/b": false, "a:b": false,
	} {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}
