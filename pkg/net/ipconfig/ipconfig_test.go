package ipconfig

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	a := netip.MustParseAddr
	pf := netip.MustParsePrefix
	tests := []struct {
		in      string
		want    Param
		wantErr string
	}{
		{in: "dhcp", want: Param{Method: DHCP}},
		{in: "on", want: Param{Method: DHCP}},
		{in: "any", want: Param{Method: DHCP}},
		{in: "bootp", want: Param{Method: DHCP}},
		{in: "BOTH", want: Param{Method: DHCP}},
		{in: "off", want: Param{Method: Off}},
		{in: "none", want: Param{Method: Off}},
		{in: "eth0:dhcp", want: Param{Method: DHCP, Device: "eth0"}},
		{in: "eth0.100:off", want: Param{Method: Off, Device: "eth0.100"}},
		{
			in:   "10.0.2.15::10.0.2.2:255.255.255.0:guest:eth0:off:10.0.2.3:1.1.1.1",
			want: Param{Method: Static, Device: "eth0", Address: pf("10.0.2.15/24"), Gateway: a("10.0.2.2"), Hostname: "guest", DNS: []netip.Addr{a("10.0.2.3"), a("1.1.1.1")}},
		},
		{
			in:   "192.168.1.5:192.168.1.1:192.168.1.254:255.255.255.0::eth1:none",
			want: Param{Method: Static, Device: "eth1", Address: pf("192.168.1.5/24"), Server: a("192.168.1.1"), Gateway: a("192.168.1.254")},
		},
		{in: "10.1.2.3::::::", want: Param{Method: Static, Address: pf("10.1.2.3/8")}, wantErr: ""},
		{in: "172.16.0.9", wantErr: `autoconf "172.16.0.9"`},
		{in: "172.16.0.9::::::", want: Param{Method: Static, Address: pf("172.16.0.9/16")}},
		{in: "192.0.2.7:::::eth0", want: Param{Method: Static, Device: "eth0", Address: pf("192.0.2.7/24")}},
		{in: "10.0.0.5:::24::eth0:off", want: Param{Method: Static, Device: "eth0", Address: pf("10.0.0.5/24")}},
		{in: "10.0.0.5:::255.255.255.0::eth0:dhcp", want: Param{Method: DHCP, Device: "eth0"}},
		{in: ":::::eth0:dhcp", want: Param{Method: DHCP, Device: "eth0"}},
		{in: ":::::eth0:", want: Param{Method: DHCP, Device: "eth0"}},
		{in: "::::box:eth0:dhcp:9.9.9.9", want: Param{Method: DHCP, Device: "eth0", Hostname: "box", DNS: []netip.Addr{a("9.9.9.9")}}},
		{in: ":::::eth0:off", want: Param{Method: Off, Device: "eth0"}},
		{in: "10.0.0.5::::::off:::10.0.0.123", want: Param{Method: Static, Address: pf("10.0.0.5/8"), NTP: a("10.0.0.123")}},

		{in: "", wantErr: "empty value"},
		{in: "dhcpp", wantErr: `autoconf "dhcpp" is not one of`},
		{in: "rarp", wantErr: "rarp is not supported"},
		{in: "eth0:dhcp6", wantErr: "not supported"},
		{in: "10.0.0.300::::::off", wantErr: `client-ip "10.0.0.300" is not an IPv4 address`},
		{in: "10.0.0.3:::255.0.255.0::eth0:off", wantErr: `netmask "255.0.255.0" is not contiguous`},
		{in: "10.0.0.3:::33::eth0:off", wantErr: `netmask "33"`},
		{in: "10.0.0.3::10.1.0.1:255.255.255.0::eth0:off", wantErr: "gw-ip 10.1.0.1 is not in the client's network 10.0.0.0/24"},
		{in: ":::255.255.255.0::eth0:off", wantErr: "netmask given without a client-ip"},
		{in: "10.0.0.3::::-bad-:eth0:off", wantErr: `hostname "-bad-" is not a valid host name`},
		{in: "10.0.0.3:::::averyveryverylongname:off", wantErr: `device "averyveryverylongname"`},
		{in: "10.0.0.3::::::off:nope", wantErr: `dns0-ip "nope"`},
		{in: "10.0.0.3::::::off::2001:db8::1", wantErr: "IPv6 addresses are not accepted"},
		{in: "10.0.0.3::::::off::fd00::1", wantErr: "fields, at most 10"},
		{in: "10.0.0.3::::::off:fd00::", wantErr: `dns0-ip "fd00"`},
		{in: "10.0.0.3::::::maybe", wantErr: `autoconf "maybe"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "ip=") {
					t.Errorf("error %q does not name the parameter", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) =\n %+v\nwant\n %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestMethodString(t *testing.T) {
	for m, want := range map[Method]string{Off: "off", Static: "static", DHCP: "dhcp"} {
		if m.String() != want {
			t.Errorf("%d.String() = %q, want %q", m, m.String(), want)
		}
	}
}
