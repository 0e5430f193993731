package kmod

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestFnmatch(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"", "", true},
		{"", "a", false},
		{"a", "", false},
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abc", "abcd", false},
		{"*", "", true},
		{"*", "anything/with/slashes", true},
		{"**", "x", true},
		{"a*", "a", true},
		{"a*", "ab", true},
		{"*a", "ba", true},
		{"*a", "ab", false},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYcZ", false},
		{"a*b*c", "acb", false},
		{"*0094*", ",0093,0094,0095", true},
		{"*0094*", ",0093,0095", false},
		{"?", "", false},
		{"?", "x", true},
		{"??", "x", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*?", "", false},
		{"*?", "a", true},
		{"[abc]", "b", true},
		{"[abc]", "d", false},
		{"[a-c]x", "bx", true},
		{"[a-c]x", "dx", false},
		{"[!a-c]", "d", true},
		{"[!a-c]", "b", false},
		{"[^a-c]", "d", true},
		{"[]]", "]", true},
		{"[]a]", "a", true},
		{"[!]]", "]", false},
		{"[!]]", "x", true},
		{"[a-]", "-", true},
		{"[[:digit:]]x", "7x", true},
		{"[[:digit:]]x", "ax", false},
		{"[[:xdigit:]]", "F", true},
		{"[[:alpha:][:digit:]]", "5", true},
		{"[[:upper:]]", "a", false},
		{"d0[0-2]*", "d01xyz", true},
		{"d0[0-2]*", "d03xyz", false},
		{"d011[4-7]dc*", "d0116dc00", true},
		{"d011[4-7]dc*", "d0118dc00", false},
		{"[", "[", true},     // unterminated bracket is literal
		{"[ab", "[ab", true}, // unterminated bracket is literal
		{"[ab", "a", false},
		{`\*`, "*", true},
		{`\*`, "x", false},
		{`a\?`, "a?", true},
		{`a\?`, "ab", false},
		{`\`, `\`, true},
		{`[\]]`, "]", true},
		{"input:b*v*p*e*_e*k*r*a*m*l*s*f*w*", "input:b0019v0000p0001e0000_e0,1,k74,ramlsfw", true},
		{"input:b*v*p*e*_e*k*r*a*m*l*s*f*w*", "input:b0019v0000p0001e0000_e0,1,k74,ramlsf", false},
		{"acpi*:LNXPWRBN:*", "acpi:LNXPWRBN:", true},
		{"acpi*:LNXPWRBN:*", "acpi:LNXSYBUS:", false},
		{"of:N*T*Cvirtio,mmio", "of:NvirtioT(null)Cvirtio,mmio", true},
		{"*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false}, // must not blow up
	}
	for _, tt := range tests {
		if got := fnmatch(tt.p, tt.s); got != tt.want {
			t.Errorf("fnmatch(%q, %q) = %v, want %v", tt.p, tt.s, got, tt.want)
		}
	}
}

func TestNormalizeAlias(t *testing.T) {
	for in, want := range map[string]string{
		"fs-overlay":               "fs_overlay",
		"usb:v1p2d0[0-2]*dc-x":     "usb:v1p2d0[0-2]*dc_x",
		"input:b*v*p*e*-e*k*":      "input:b*v*p*e*_e*k*",
		"plain":                    "plain",
		"a-[a-z-]-b":               "a_[a-z-]_b",
		"platform:leds-gpio-thing": "platform:leds_gpio_thing",
	} {
		if got := normalizeAlias(in); got != want {
			t.Errorf("normalizeAlias(%q) = %q, want %q", in, got, want)
		}
	}
}

// bruteMatch is the obvious implementation the bucketed table must agree
// with.
func bruteMatch(t *aliasTable, s string) []string {
	var out []string
	for _, a := range t.list {
		if fnmatch(a.pattern, s) && !slices.Contains(out, a.module) {
			out = append(out, a.module)
		}
	}
	return out
}

func TestAliasTableAgreesWithBruteForce(t *testing.T) {
	ix := openFixture(t)
	queries := []string{
		"", "c", "crc32c", "crypto_crc32c", "virtio:d00000001v00001AF4", "virtio:d00000001v",
		"acpi:LNXPWRBN:", "acpiX:PNP0C0C:Y", "of:NvirtioT(null)Cvirtio,mmio", "of:NvirtioT(null)Cvirtio,mmioCfoo",
		"pci:v00001AF4d00001041sv00001AF4sd00001041bc02sc00i00", "usb:v13FDp3940d0100dc00dsc00dp00ic00isc00ip00in00",
		"cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0094,0095", "input:b0019v0000p0001e0000_e0,1,k74,ramlsfw",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "acdeimnoprstuvx:0124_-,*"
	for range 2000 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		queries = append(queries, string(b))
	}
	for _, q := range queries {
		q = normalizeAlias(q)
		if got, want := ix.aliases.match(q), bruteMatch(ix.aliases, q); !slices.Equal(got, want) {
			t.Errorf("match(%q) = %q, brute force %q", q, got, want)
		}
	}
}

func ExampleIndex_MatchAlias() {
	ix, err := Open("testdata/index")
	if err != nil {
		panic(err)
	}
	for _, m := range ix.MatchAlias("virtio:d00000001v00001AF4") {
		fmt.Println(m.Name, m.Path)
	}
	// Output: virtio_net kernel/drivers/net/virtio_net.ko
}
