package boot

import (
	"reflect"
	"testing"

	"github.com/photon-init/photon-init/pkg/config"
)

func TestSplitCmdline(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  a b\tc\n", []string{"a", "b", "c"}},
		{`a="b c" d`, []string{"a=b c", "d"}},
		{`"x y"`, []string{"x y"}},
		{`k=""`, []string{"k="}},
	}
	for _, tt := range tests {
		if got := SplitCmdline(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitCmdline(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Cmdline
	}{
		{"empty", "", Cmdline{}},
		{
			"all options",
			"BOOT_IMAGE=/vmlinuz console=tty0 console=ttyS0,115200n8 earlycon=uart8250,io,0x3f8 photon.debug photon.loglevel=debug photon.hostname=web photon.modules=virtio_net,,overlay photon.modules=xfs photon.console=quiet quiet",
			Cmdline{Debug: "1", LogLevel: "debug", Hostname: "web", Modules: []string{"virtio_net", "overlay", "xfs"}, Quiet: true, Consoles: []string{"tty0", "ttyS0"}},
		},
		{"debug value", "photon.debug=shell", Cmdline{Debug: "shell"}},
		{"ip= kept in order for the network step", "ip=dhcp ip=10.0.2.15::10.0.2.2:255.255.255.0::eth1:off ip=", Cmdline{IP: []string{"dhcp", "10.0.2.15::10.0.2.2:255.255.255.0::eth1:off", ""}}},
		{"uart console skipped", "console=uart8250,io,0x3f8,115200", Cmdline{}},
		{
			"bad values warn",
			"photon.loglevel=loud photon.hostname=-x photon.modules=a/b photon.bogus=1 photon.console=loud",
			Cmdline{Warnings: []string{
				`photon.loglevel="loud": not one of debug, info, warn, error`,
				`photon.hostname="-x": not a valid host name`,
				`photon.modules: "a/b" is not a module name`,
				"unknown option photon.bogus",
				`photon.console="loud": want quiet or normal`,
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCmdline(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseCmdline(%q)\n got  %+v\n want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestMergeCommandLineWins(t *testing.T) {
	file := &config.Config{Hostname: "from-file", Modules: []string{"a"}, Console: config.Console{LogLevel: "warn"}}
	tests := []struct {
		name string
		cl   Cmdline
		want Settings
	}{
		{"file only", Cmdline{}, Settings{Hostname: "from-file", Modules: []string{"a"}, LogLevel: "warn"}},
		{"cmdline wins", Cmdline{Hostname: "cl", LogLevel: "debug", Modules: []string{"b"}, Quiet: true, Debug: "1"},
			Settings{Hostname: "cl", Modules: []string{"a", "b"}, LogLevel: "debug", Quiet: true, Debug: "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Merge(file, tt.cl); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Merge = %+v, want %+v", got, tt.want)
			}
		})
	}
	if got := Merge(&config.Config{}, Cmdline{}); got.LogLevel != "info" {
		t.Errorf("default log level = %q, want info", got.LogLevel)
	}
}
