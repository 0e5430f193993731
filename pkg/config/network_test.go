package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseNetwork(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		wantErr string // substring; "" means success
		check   func(*testing.T, *Config)
	}{
		{
			name: "full",
			text: `network:
  interfaces:
    - name: eth0
      addresses: [192.168.1.10/24, "fd00::10/64"]
      gateway: 192.168.1.1
      gateway6: fd00::1
      mtu: 9000
      accept_ra: false
      routes:
        - to: 10.1.0.0/16
          via: 192.168.1.254
          metric: 100
        - to: 172.16.0.0/12
    - name: "en*"
    - mac: 52:54:00:12:34:56
      dhcp: true
      addresses: [10.9.9.9/32]
  dns:
    nameservers: [1.1.1.1, "2606:4700:4700::1111"]
    search: [example.com, corp.example.]
    options: [ndots:2, edns0]
`,
			check: func(t *testing.T, c *Config) {
				n := c.Network
				if len(n.Interfaces) != 3 || len(n.DNS.Nameservers) != 2 || len(n.DNS.Search) != 2 || len(n.DNS.Options) != 2 {
					t.Fatalf("decoded %+v", n)
				}
				eth0 := n.Interfaces[0]
				if eth0.DHCPEnabled() || eth0.MTU != 9000 || eth0.AcceptRA == nil || *eth0.AcceptRA || len(eth0.Routes) != 2 || eth0.Gateway6 != "fd00::1" {
					t.Errorf("eth0 = %+v", eth0)
				}
				if !n.Interfaces[1].DHCPEnabled() || n.Interfaces[1].AcceptRA != nil {
					t.Errorf("en* = %+v, want DHCP by default", n.Interfaces[1])
				}
				if !n.Interfaces[2].DHCPEnabled() {
					t.Errorf("dhcp: true with addresses is not DHCP")
				}
				to, via, err := eth0.Routes[0].Parse()
				if err != nil || to != netip.MustParsePrefix("10.1.0.0/16") || via != netip.MustParseAddr("192.168.1.254") {
					t.Errorf("route = %v %v %v", to, via, err)
				}
			},
		},
		{name: "unknown field", text: "network:\n  interfaces:\n    - name: eth0\n      adresses: []\n", wantErr: "init.yaml:4: field adresses not found in type config.Interface"},
		{name: "no match", text: "network:\n  interfaces:\n    - mtu: 1500\n", wantErr: "init.yaml:3: network.interfaces[0]: name or mac is required"},
		{name: "bad glob", text: "network:\n  interfaces:\n    - name: \"en[\"\n", wantErr: `init.yaml:3: network.interfaces[0].name: "en[" is not a link name or glob`},
		{name: "bad mac", text: "network:\n  interfaces:\n    - name: a\n    - mac: 52:54:00\n", wantErr: `init.yaml:4: network.interfaces[1].mac: "52:54:00" is not a MAC address`},
		{name: "bad address", text: "network:\n  interfaces:\n    - name: eth0\n      addresses:\n        - 10.0.0.1/24\n        - 10.0.0.2\n", wantErr: `init.yaml:6: network.interfaces[0].addresses: "10.0.0.2" is not an address with a prefix length`},
		{name: "v6 gateway in gateway", text: "network:\n  interfaces:\n    - name: eth0\n      addresses: [10.0.0.1/24]\n      gateway: fd00::1\n", wantErr: `init.yaml:5: network.interfaces[0].gateway: "fd00::1" is not an IPv4 address`},
		{name: "gateway without v4", text: "network:\n  interfaces:\n    - name: eth0\n      addresses: [fd00::2/64]\n      gateway: 10.0.0.1\n", wantErr: "init.yaml:5: network.interfaces[0].gateway: 10.0.0.1 needs an IPv4 address"},
		{name: "bad gateway6", text: "network:\n  interfaces:\n    - name: eth0\n      gateway6: 10.0.0.1\n", wantErr: `init.yaml:4: network.interfaces[0].gateway6: "10.0.0.1" is not an IPv6 address`},
		{name: "route family", text: "network:\n  interfaces:\n    - name: eth0\n      routes:\n        - to: 10.0.0.0/8\n          via: fd00::1\n", wantErr: "init.yaml:5: network.interfaces[0].routes[0]: via fd00::1 and to 10.0.0.0/8 are not of one address family"},
		{name: "route no to", text: "network:\n  interfaces:\n    - name: eth0\n      routes:\n        - via: 10.0.0.1\n", wantErr: "init.yaml:5: network.interfaces[0].routes[0]: to: a destination prefix is required"},
		{name: "route bad metric", text: "network:\n  interfaces:\n    - name: eth0\n      routes:\n        - to: default\n          via: 10.0.0.1\n          metric: -1\n", wantErr: "metric -1 is negative"},
		{name: "mtu range", text: "network:\n  interfaces:\n    - name: eth0\n      mtu: 10\n", wantErr: "init.yaml:4: network.interfaces[0].mtu: 10 is not between 68 and 65535"},
		{name: "mtu v6", text: "network:\n  interfaces:\n    - name: eth0\n      addresses: [fd00::1/64]\n      mtu: 1000\n", wantErr: "init.yaml:5: network.interfaces[0].mtu: 1000 is below IPv6's minimum"},
		{name: "dhcp not bool", text: "network:\n  interfaces:\n    - name: eth0\n      dhcp: sometimes\n", wantErr: "init.yaml:4: cannot unmarshal !!str `sometimes` into bool"},
		{name: "bad nameserver", text: "network:\n  dns:\n    nameservers: [1.1.1.1, one]\n", wantErr: `init.yaml:3: network.dns.nameservers: "one" is not an IP address`},
		{name: "bad search", text: "network:\n  dns:\n    search:\n      - \"bad domain\"\n", wantErr: `init.yaml:4: network.dns.search: "bad domain" is not a domain name`},
		{name: "bad option", text: "network:\n  dns:\n    options: [\"a b\"]\n", wantErr: `init.yaml:3: network.dns.options: "a b"`},
		{name: "several errors in line order", text: "network:\n  interfaces:\n    - name: eth0\n      mtu: 1\n    - mac: x\n", wantErr: "init.yaml:4: network.interfaces[0].mtu: 1 is not between 68 and 65535\n/etc/photon/init.yaml:5: network.interfaces[1].mac"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("/etc/photon/init.yaml", []byte(tt.text))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				tt.check(t, cfg)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if len(cfg.Network.Interfaces) != 0 {
				t.Errorf("a failed parse returned interfaces: %+v", cfg.Network)
			}
		})
	}
}

func TestValidLinkName(t *testing.T) {
	for s, want := range map[string]bool{"eth0": true, "enp0s3": true, "eth0.100": true, "": false, "a/b": false, "x:1": false, "abcdefghijklmnop": false, "..": false} {
		if got := ValidLinkName(s); got != want {
			t.Errorf("ValidLinkName(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestParseBridge(t *testing.T) {
	cfg, err := Parse("/etc/photon/init.yaml", []byte("network:\n  bridge:\n    name: br-ctr\n    subnet: 172.30.0.0/24\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Network.Bridge.Name != "br-ctr" || cfg.Network.Bridge.Subnet != "172.30.0.0/24" {
		t.Errorf("bridge %+v", cfg.Network.Bridge)
	}
	errs := []struct{ text, want string }{
		{"network:\n  bridge:\n    name: a-very-long-bridge-name\n", `init.yaml:3: network.bridge.name: "a-very-long-bridge-name" is not a link name`},
		{"network:\n  bridge:\n    subnet: 10.88.0.1/16\n", `init.yaml:3: network.bridge.subnet: "10.88.0.1/16" has host bits set: the network is 10.88.0.0/16`},
		{"network:\n  bridge:\n    subnet: fd00::/64\n", `init.yaml:3: network.bridge.subnet: "fd00::/64" is not an IPv4 prefix`},
		{"network:\n  bridge:\n    subnet: 10.0.0.0/31\n", `init.yaml:3: network.bridge.subnet: "10.0.0.0/31": the prefix length must be between 8 and 30`},
		{"network:\n  bridge:\n    subnet: ten\n", `init.yaml:3: network.bridge.subnet: "ten" is not an IPv4 network prefix`},
		{"network:\n  bridge:\n    nmae: x\n", "init.yaml:3: field nmae not found in type config.Bridge"},
	}
	for _, tt := range errs {
		if _, err := Parse("/etc/photon/init.yaml", []byte(tt.text)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.text, err, tt.want)
		}
	}
}
