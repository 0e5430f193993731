// Package dhcp is photon-init's DHCPv4 client for one link, on top of
// insomniacslk/dhcp's nclient4 (which speaks the protocol over a raw
// socket, so the link needs no address): it acquires a lease, retrying with
// capped exponential backoff while no server answers; renews it at T1
// (RENEWING), rebinds at T2 with any server (REBINDING), starts over when it
// expires or a server refuses it (NAK), and releases it when stopped.
//
// The client does not touch the link: it reports leases through callbacks,
// and package hostnet applies them.
package dhcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// Timing holds the client's timers; zero fields take the defaults.
type Timing struct {
	// Timeout is the first retransmission timeout of an exchange; it
	// doubles at every retransmission (RFC 2131 §4.1). Default 1 s.
	Timeout time.Duration
	// Tries is the number of transmissions of one message. Default 4
	// (1+2+4+8 = 15 s with the default timeout).
	Tries int
	// BackoffMin and BackoffMax bound the wait between two failed
	// acquisitions; it doubles from min to max, with ±20% jitter.
	// Defaults 1 s and 30 s.
	BackoffMin, BackoffMax time.Duration
	// RetransmitMin is the least wait between two tries of a renewal or
	// rebinding (RFC 2131 §4.4.5: half the time left, down to 60 s).
	// Default 60 s; a lease's T1, T2 and lifetime are the server's.
	RetransmitMin time.Duration
}

// withDefaults fills in the zero fields.
func (t Timing) withDefaults() Timing {
	if t.Timeout <= 0 {
		t.Timeout = time.Second
	}
	if t.Tries <= 0 {
		t.Tries = 4
	}
	if t.BackoffMin <= 0 {
		t.BackoffMin = time.Second
	}
	if t.BackoffMax < t.BackoffMin {
		t.BackoffMax = 30 * time.Second
		if t.BackoffMax < t.BackoffMin {
			t.BackoffMax = t.BackoffMin
		}
	}
	if t.RetransmitMin <= 0 {
		t.RetransmitMin = 60 * time.Second
	}
	return t
}

// Options configure a Client.
type Options struct {
	// Interface is the link's name.
	Interface string
	// Hostname, when set, is sent to the server (option 12), which may
	// register it in its DNS.
	Hostname string
	// Timing are the timers (zero: defaults).
	Timing Timing
	// Log gets the client's messages (nil: discarded).
	Log *slog.Logger
	// Bound is called when a lease is granted, renewed or rebound; prev is
	// the lease it replaces (nil after INIT). Its error is logged.
	Bound func(l, prev *Lease) error
	// Lost is called when a lease ends: expired, refused (NAK) or
	// released. The address must no longer be used.
	Lost func(l *Lease, reason string)
}

// Client runs DHCPv4 on one link.
type Client struct {
	opts   Options
	timing Timing
	log    *slog.Logger

	mu    sync.Mutex
	lease *Lease
}

// New returns a client; Run starts it.
func New(opts Options) *Client {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{opts: opts, timing: opts.Timing.withDefaults(), log: log}
}

// Lease returns the current lease, or nil.
func (c *Client) Lease() *Lease {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lease
}

// ErrNoLease is returned by Run's phases when no server answered.
var ErrNoLease = errors.New("no DHCP server answered")

// Run runs the client until ctx ends, then releases the lease it holds.
// It returns nil after a clean stop.
func (c *Client) Run(ctx context.Context) error {
	var nc *nclient4.Client
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	fails := 0
	for ctx.Err() == nil {
		if nc == nil {
			var err error
			nc, err = nclient4.New(c.opts.Interface,
				nclient4.WithTimeout(c.timing.Timeout), nclient4.WithRetry(c.timing.Tries))
			if err != nil {
				fails++
				c.retryLog(fails, fmt.Errorf("open raw socket: %w", err))
				if !sleep(ctx, c.backoff(fails)) {
					break
				}
				continue
			}
		}
		lease, err := c.acquire(ctx, nc)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			fails++
			c.retryLog(fails, err)
			if !sleep(ctx, c.backoff(fails)) {
				break
			}
			continue
		}
		if fails > 0 {
			c.log.Info(fmt.Sprintf("dhcp: %s: a server answered after %d failed attempts", c.opts.Interface, fails))
		}
		fails = 0
		c.log.Info(fmt.Sprintf("dhcp: %s leased %s", c.opts.Interface, lease))
		c.bind(lease, nil)
		c.keep(ctx, nc, lease)
	}
	c.release(nc)
	return nil
}

// retryLog reports a failed acquisition: the first at info level, then one
// in every ten, so that a machine without a server does not flood its
// console.
func (c *Client) retryLog(fails int, err error) {
	msg := fmt.Sprintf("dhcp: %s: %v; retrying in the background", c.opts.Interface, err)
	if fails == 1 || fails%10 == 0 {
		c.log.Info(msg, "attempts", fails)
	} else {
		c.log.Debug(msg, "attempts", fails)
	}
}

// backoff is the wait after the n'th failed acquisition.
func (c *Client) backoff(n int) time.Duration {
	d := c.timing.BackoffMin
	for i := 1; i < n && d < c.timing.BackoffMax; i++ {
		d *= 2
	}
	if d > c.timing.BackoffMax {
		d = c.timing.BackoffMax
	}
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}

// newMessage builds a bare client message of the given type with a fresh
// transaction id. The library's constructors draw their transaction id
// from the kernel's random pool and spin until it is ready, which early in
// a boot without a hardware generator can take long: ids need no secrecy,
// math/rand's do.
func newMessage(hw net.HardwareAddr, typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	var xid dhcpv4.TransactionID
	binary.BigEndian.PutUint32(xid[:], rand.Uint32())
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        iana.HWTypeEthernet,
		ClientHWAddr:  hw,
		TransactionID: xid,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       make(dhcpv4.Options),
	}
	dhcpv4.WithMessageType(typ)(d)
	for _, m := range mods {
		m(d)
	}
	return d
}

// message builds a DISCOVER or REQUEST: a new message with the options
// photon-init asks for and the host name.
func (c *Client) message(hw net.HardwareAddr, typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	base := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)),
		dhcpv4.WithRequestedOptions(
			dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionHostName, dhcpv4.OptionDomainName, dhcpv4.OptionInterfaceMTU,
			dhcpv4.OptionBroadcastAddress, dhcpv4.OptionClasslessStaticRoute,
			dhcpv4.OptionDNSDomainSearchList, dhcpv4.OptionIPAddressLeaseTime,
			dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue,
		),
	}
	if c.opts.Hostname != "" {
		base = append(base, dhcpv4.WithOption(dhcpv4.OptHostName(c.opts.Hostname)))
	}
	return newMessage(hw, typ, append(base, mods...)...)
}

// exchange sends a message (broadcast) and waits for an ACK or a NAK,
// from server when it is valid, with nclient4's retransmissions.
func (c *Client) exchange(ctx context.Context, nc *nclient4.Client, msg *dhcpv4.DHCPv4, server net.IP) (*dhcpv4.DHCPv4, error) {
	match := nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
	if server != nil {
		match = nclient4.IsAll(nclient4.IsCorrectServer(server), match)
	}
	resp, err := nc.SendAndRead(ctx, nclient4.DefaultServers, msg, match)
	if err != nil {
		if errors.Is(err, nclient4.ErrNoResponse) {
			return nil, ErrNoLease
		}
		return nil, err
	}
	if resp.MessageType() == dhcpv4.MessageTypeNak {
		return nil, &nclient4.ErrNak{Offer: msg, Nak: resp}
	}
	return resp, nil
}

// acquire is INIT → SELECTING → REQUESTING → BOUND.
func (c *Client) acquire(ctx context.Context, nc *nclient4.Client) (*Lease, error) {
	hw := nc.InterfaceAddr()
	offer, err := nc.SendAndRead(ctx, nclient4.DefaultServers, c.message(hw, dhcpv4.MessageTypeDiscover),
		nclient4.IsMessageType(dhcpv4.MessageTypeOffer))
	if err != nil {
		if errors.Is(err, nclient4.ErrNoResponse) {
			return nil, ErrNoLease
		}
		return nil, fmt.Errorf("discover: %w", err)
	}
	req := c.message(hw, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOptionCopied(offer, dhcpv4.OptionServerIdentifier))
	ack, err := c.exchange(ctx, nc, req, offer.ServerIdentifier())
	if err != nil {
		if isNak(err) {
			return nil, fmt.Errorf("server %s refused its offer of %s: %w", offer.ServerIdentifier(), offer.YourIPAddr, err)
		}
		return nil, fmt.Errorf("request %s from %s: %w", offer.YourIPAddr, offer.ServerIdentifier(), err)
	}
	return newLease(c.opts.Interface, &nclient4.Lease{Offer: offer, ACK: ack, CreationTime: time.Now()}, time.Now())
}

// bind records a lease and reports it.
func (c *Client) bind(l, prev *Lease) {
	c.mu.Lock()
	c.lease = l
	c.mu.Unlock()
	if c.opts.Bound != nil {
		if err := c.opts.Bound(l, prev); err != nil {
			c.log.Error(fmt.Sprintf("dhcp: %s: apply lease %s: %v", c.opts.Interface, l.Address, err))
		}
	}
}

// lose forgets the lease and reports it.
func (c *Client) lose(l *Lease, reason string) {
	c.mu.Lock()
	c.lease = nil
	c.mu.Unlock()
	if c.opts.Lost != nil {
		c.opts.Lost(l, reason)
	}
}

// keep holds a lease: BOUND until T1, RENEWING until T2, REBINDING until
// it expires. It returns when the lease is gone (expired or refused), or
// when ctx ends with the lease still held.
func (c *Client) keep(ctx context.Context, nc *nclient4.Client, l *Lease) {
	for {
		if l.Duration == 0 { // infinite
			<-ctx.Done()
			return
		}
		if !sleepUntil(ctx, l.Bound.Add(l.T1)) {
			return
		}
		next, err := c.extend(ctx, nc, l, false, l.Bound.Add(l.T2))
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			c.log.Debug(fmt.Sprintf("dhcp: %s renewed %s", c.opts.Interface, next))
			c.bind(next, l)
			l = next
			continue
		}
		if isNak(err) {
			c.log.Info(fmt.Sprintf("dhcp: %s: server %s refused to renew %s: starting over", c.opts.Interface, l.Server, l.Address))
			c.lose(l, "refused")
			return
		}
		c.log.Info(fmt.Sprintf("dhcp: %s: no answer from %s to renew %s: rebinding with any server", c.opts.Interface, l.Server, l.Address))
		next, err = c.extend(ctx, nc, l, true, l.Expires())
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			c.log.Info(fmt.Sprintf("dhcp: %s rebound %s", c.opts.Interface, next))
			c.bind(next, l)
			l = next
			continue
		}
		if isNak(err) {
			c.log.Info(fmt.Sprintf("dhcp: %s: server refused to rebind %s: starting over", c.opts.Interface, l.Address))
			c.lose(l, "refused")
			return
		}
		c.log.Info(fmt.Sprintf("dhcp: %s: lease of %s expired: starting over", c.opts.Interface, l.Address))
		c.lose(l, "expired")
		return
	}
}

// extend renews (rebind false: from the lease's server) or rebinds (from
// any server) until deadline, retransmitting after half the remaining
// time, down to RetransmitMin.
func (c *Client) extend(ctx context.Context, nc *nclient4.Client, l *Lease, rebind bool, deadline time.Time) (*Lease, error) {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, ErrNoLease
		}
		wait := left / 2
		if wait < c.timing.RetransmitMin {
			wait = c.timing.RetransmitMin
		}
		if wait > left {
			wait = left
		}
		start := time.Now()
		tryCtx, cancel := context.WithDeadline(ctx, start.Add(wait))
		raw, err := c.request(tryCtx, nc, l, rebind)
		cancel()
		if err == nil {
			return newLease(c.opts.Interface, raw, time.Now())
		}
		if isNak(err) || ctx.Err() != nil {
			return nil, err
		}
		c.log.Debug(fmt.Sprintf("dhcp: %s: %v", c.opts.Interface, err), "rebind", rebind)
		// nclient4 gives up after its tries; wait out the rest of the
		// window before the next transmission.
		if !sleepUntil(ctx, start.Add(wait)) {
			return nil, ctx.Err()
		}
	}
}

// request sends one renewal (to the lease's server) or rebinding (to any
// server) request: ciaddr set, no server identifier (RFC 2131 §4.3.2).
// The server that answers holds the lease from then on.
func (c *Client) request(ctx context.Context, nc *nclient4.Client, l *Lease, rebind bool) (*nclient4.Lease, error) {
	req := c.message(nc.InterfaceAddr(), dhcpv4.MessageTypeRequest,
		dhcpv4.WithClientIP(net.IP(l.Address.Addr().AsSlice())))
	var server net.IP
	if !rebind {
		server = net.IP(l.Server.AsSlice())
	}
	ack, err := c.exchange(ctx, nc, req, server)
	if err != nil {
		if rebind {
			return nil, fmt.Errorf("rebind %s: %w", l.Address.Addr(), err)
		}
		return nil, fmt.Errorf("renew %s with %s: %w", l.Address.Addr(), l.Server, err)
	}
	return &nclient4.Lease{Offer: ack, ACK: ack, CreationTime: time.Now()}, nil
}

// release gives the lease back (DHCPRELEASE) and reports it lost.
func (c *Client) release(nc *nclient4.Client) {
	l := c.Lease()
	if l == nil {
		return
	}
	if nc != nil {
		if err := sendRelease(c.opts.Interface, nc.InterfaceAddr(), l); err != nil {
			c.log.Warn(fmt.Sprintf("dhcp: %s: release %s: %v", c.opts.Interface, l.Address, err))
		} else {
			c.log.Info(fmt.Sprintf("dhcp: %s released %s to %s", c.opts.Interface, l.Address, l.Server))
		}
	}
	c.lose(l, "released")
}

// sendRelease sends a DHCPRELEASE to the lease's server from the leased
// address (RFC 2131 §4.4.6). nclient4's own Release sends it from
// 0.0.0.0 to the server's unicast address, which the server's kernel drops
// as a martian source; here a raw socket of our own writes it with the
// leased address as source.
func sendRelease(ifname string, hw net.HardwareAddr, l *Lease) error {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	raw, err := packet.Listen(ifc, packet.Datagram, unix.ETH_P_IP, nil)
	if err != nil {
		return fmt.Errorf("open raw socket: %w", err)
	}
	defer raw.Close()
	ip := net.IP(l.Address.Addr().AsSlice())
	server := net.IP(l.Server.AsSlice())
	conn := nclient4.NewBroadcastUDPConn(raw, &net.UDPAddr{IP: ip, Port: nclient4.ClientPort})
	msg := newMessage(hw, dhcpv4.MessageTypeRelease,
		dhcpv4.WithClientIP(ip), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)))
	if _, err := conn.WriteTo(msg.ToBytes(), &net.UDPAddr{IP: server, Port: nclient4.ServerPort}); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

func isNak(err error) bool {
	var nak *nclient4.ErrNak
	return errors.As(err, &nak)
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// sleepUntil waits until t or until ctx ends; it reports whether ctx is
// still live.
func sleepUntil(ctx context.Context, t time.Time) bool {
	return sleep(ctx, time.Until(t))
}
