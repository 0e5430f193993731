package hostnet

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/photon-init/photon-init/pkg/net/link"
)

// HostnamePrefix starts every default host name.
const HostnamePrefix = "photon"

// The regular expressions are compiled on first use, not at package init,
// which every exec of the binary pays (PID 1 and each container's init).
var hex32 = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{32}$`) })

// StableHostname is the host name of a machine that has none configured
// and got none from DHCP: "photon-" and eight hex digits that stay the same
// across boots of the same machine, taken from the first of
//
//  1. /etc/machine-id (its first 8 digits), when it holds a valid id;
//  2. /sys/class/dmi/id/product_uuid (its first 8 digits), unless it is
//     unset (all zeros or all ones, as some firmware leaves it);
//  3. the MAC address of the ethernet link with the lowest index (its last
//     4 bytes: the first 3 only name the vendor);
//
// or plain "photon" when there is none. root is "/" on a machine (tests
// pass a directory).
func StableHostname(root string, links []netlink.Link) string {
	if id := readTrim(filepath.Join(root, "etc/machine-id")); hex32().MatchString(id) && strings.Trim(id, "0") != "" {
		return HostnamePrefix + "-" + id[:8]
	}
	uuid := strings.ToLower(strings.ReplaceAll(readTrim(filepath.Join(root, "sys/class/dmi/id/product_uuid")), "-", ""))
	if hex32().MatchString(uuid) && strings.Trim(uuid, "0") != "" && strings.Trim(uuid, "f") != "" {
		return HostnamePrefix + "-" + uuid[:8]
	}
	var eth []netlink.Link
	for _, l := range links {
		if link.IsEthernet(l) {
			eth = append(eth, l)
		}
	}
	sort.Slice(eth, func(i, j int) bool { return eth[i].Attrs().Index < eth[j].Attrs().Index })
	if len(eth) > 0 {
		hw := eth[0].Attrs().HardwareAddr
		return HostnamePrefix + "-" + hex.EncodeToString(hw[len(hw)-4:])
	}
	return HostnamePrefix
}

func readTrim(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
