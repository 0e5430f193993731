package image

import (
	"context"
	"io"
	"log/slog"

	clog "github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// slogHook forwards containerd's archive warnings (an ignored xattr, a
// device node skipped in a user namespace) to the store's logger.
type slogHook struct {
	log   *slog.Logger
	layer string
}

func (h slogHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (h slogHook) Fire(e *logrus.Entry) error {
	args := []any{"layer", h.layer}
	if err, ok := e.Data[logrus.ErrorKey].(error); ok {
		args = append(args, "err", err)
	}
	h.log.Warn("unpack: "+e.Message, args...)
	return nil
}

// withArchiveLogger returns ctx with a containerd logger that writes
// nothing itself and hands warnings to log, so that containerd's archive
// package never prints to PID 1's stderr.
func withArchiveLogger(ctx context.Context, log *slog.Logger, layer string) context.Context {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.WarnLevel)
	l.AddHook(slogHook{log: log, layer: layer})
	return clog.WithLogger(ctx, logrus.NewEntry(l))
}
