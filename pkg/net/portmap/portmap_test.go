package portmap

import (
	"strings"
	"testing"
)

func mustParse(t *testing.T, ip string, hp, cp uint16, proto string) Port {
	t.Helper()
	p, err := Parse(ip, hp, cp, proto)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParse(t *testing.T) {
	tests := []struct {
		ip    string
		hp    uint16
		cp    uint16
		proto string
		want  string // String(), or the error's text
		err   bool
	}{
		{"", 8080, 80, "tcp", "8080:80/tcp", false},
		{"", 53, 53, "", "53:53/tcp", false},
		{"127.0.0.1", 5353, 53, "udp", "127.0.0.1:5353:53/udp", false},
		{"0.0.0.0", 80, 80, "tcp", "80:80/tcp", false},
		{"::1", 8443, 443, "tcp", "IPv6, and the bridge network is IPv4 only", true},
		{"[::]", 8443, 443, "tcp", "IPv4 only", true},
		{"host", 1, 1, "tcp", `host address "host" is not an IP address`, true},
		{"", 1, 1, "sctp", `protocol "sctp" is not tcp or udp`, true},
		{"", 0, 80, "tcp", "both a host and a container port", true},
	}
	for _, tt := range tests {
		p, err := Parse(tt.ip, tt.hp, tt.cp, tt.proto)
		switch {
		case tt.err && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Parse(%q, %d, %d, %q) error %v, want %q", tt.ip, tt.hp, tt.cp, tt.proto, err, tt.want)
		case !tt.err && (err != nil || p.String() != tt.want):
			t.Errorf("Parse(%q, %d, %d, %q) = %v, %v, want %s", tt.ip, tt.hp, tt.cp, tt.proto, p, err, tt.want)
		}
	}
}

func TestClashes(t *testing.T) {
	anyTCP := mustParse(t, "", 8080, 80, "tcp")
	tests := []struct {
		a, b Port
		want bool
	}{
		{anyTCP, mustParse(t, "", 8080, 81, "tcp"), true},
		{anyTCP, mustParse(t, "127.0.0.1", 8080, 80, "tcp"), true},
		{anyTCP, mustParse(t, "0.0.0.0", 8080, 80, "tcp"), true},
		{anyTCP, mustParse(t, "", 8080, 80, "udp"), false},
		{anyTCP, mustParse(t, "", 8081, 80, "tcp"), false},
		{mustParse(t, "127.0.0.1", 8080, 80, "tcp"), mustParse(t, "10.0.2.15", 8080, 80, "tcp"), false},
		{mustParse(t, "127.0.0.1", 8080, 80, "tcp"), mustParse(t, "127.0.0.1", 8080, 90, "tcp"), true},
	}
	for _, tt := range tests {
		if got := tt.a.Clashes(tt.b); got != tt.want || tt.b.Clashes(tt.a) != tt.want {
			t.Errorf("%s clashes %s = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	web := []Port{mustParse(t, "", 8080, 80, "tcp"), mustParse(t, "", 8443, 443, "tcp")}
	if err := r.Reserve("web", web); err != nil {
		t.Fatal(err)
	}
	// The same owner again (a restart) is fine.
	if err := r.Reserve("web", web); err != nil {
		t.Fatal(err)
	}
	err := r.Reserve("other", []Port{mustParse(t, "", 9000, 9000, "tcp"), mustParse(t, "127.0.0.1", 8443, 443, "tcp")})
	if err == nil || err.Error() != "port 127.0.0.1:8443:443/tcp: host port 8443/tcp is already published by web (8443:443/tcp)" {
		t.Fatalf("clash: %v", err)
	}
	if got := r.Ports("other"); len(got) != 0 {
		t.Errorf("a refused owner holds %v", got)
	}
	// The refused owner's other port stays free.
	if err := r.Reserve("third", []Port{mustParse(t, "", 9000, 9000, "tcp")}); err != nil {
		t.Errorf("port 9000: %v", err)
	}
	r.Release("web")
	if err := r.Reserve("other", []Port{mustParse(t, "127.0.0.1", 8443, 443, "tcp")}); err != nil {
		t.Errorf("after release: %v", err)
	}
	if err := r.Reserve("bad", []Port{{HostPort: 1, ContainerPort: 1, Protocol: "icmp"}}); err == nil {
		t.Error("an invalid port was reserved")
	}
	if err := r.Reserve("other", nil); err != nil || len(r.Ports("other")) != 0 {
		t.Errorf("reserving nothing: %v %v", err, r.Ports("other"))
	}
}
