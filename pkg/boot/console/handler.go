package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// LevelNotice is for the lines that tell the machine's life: starting, boot
// complete, each shutdown step. It shows at every log level but "error"
// (photon.console=quiet), and carries no tag.
const LevelNotice = slog.Level(6)

// Handler is a slog.Handler that formats records for a console, like the
// kernel's own lines:
//
//	[    1.234567] photon-init: kmod: loaded virtio_net
//	[    1.240001] photon-init: ERROR config: /etc/photon/init.yaml:3: ...
//
// The timestamp is the time since the kernel started.
type Handler struct {
	w      io.Writer
	level  slog.Leveler
	clock  func() time.Duration
	prefix string // pre-formatted attributes from WithAttrs
	group  string

	mu *sync.Mutex
}

// NewHandler returns a Handler writing records at or above level to w,
// stamped by clock (normally timeline.Now).
func NewHandler(w io.Writer, level slog.Leveler, clock func() time.Duration) *Handler {
	return &Handler{w: w, level: level, clock: clock, mu: &sync.Mutex{}}
}

// Enabled reports whether records at l are shown.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// Handle formats and writes one record as one line.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	t := h.clock()
	fmt.Fprintf(&b, "[%5d.%06d] photon-init: ", int64(t/time.Second), int64(t%time.Second/time.Microsecond))
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("ERROR ")
	case r.Level >= slog.LevelWarn && r.Level < LevelNotice:
		b.WriteString("WARNING ")
	}
	b.WriteString(r.Message)
	b.WriteString(h.prefix)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range attrs {
		appendAttr(&b, h.group, a)
	}
	h2 := *h
	h2.prefix = b.String()
	return &h2
}

// WithGroup returns a handler that qualifies later attribute keys with name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group = h.group + name + "."
	return &h2
}

func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			appendAttr(b, g, ga)
		}
		return
	}
	b.WriteByte(' ')
	b.WriteString(group)
	b.WriteString(a.Key)
	b.WriteByte('=')
	var v string
	if a.Value.Kind() == slog.KindDuration {
		v = a.Value.Duration().Round(time.Microsecond).String()
	} else {
		v = a.Value.String()
	}
	if v == "" || strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || r == '"' || r == '=' }) >= 0 {
		v = strconv.Quote(v)
	}
	b.WriteString(v)
}
