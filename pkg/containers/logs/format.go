package logs

import (
	"bytes"
	"fmt"
	"time"
)

// Tags of the CRI log format.
const (
	tagFull    = 'F'
	tagPartial = 'P'
)

// AppendRecord appends l as one record of the log file format,
// "2006-01-02T15:04:05.000000000Z stdout F text\n", and returns the
// extended buffer.
func AppendRecord(b []byte, l Line) []byte {
	return appendRecordAt(b, appendTime(nil, l.Time), l)
}

// appendTime appends t as a record's time.
func appendTime(b []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(b, time.RFC3339Nano)
}

// appendRecordAt appends l as a record whose time is ts, formatted by
// appendTime.
func appendRecordAt(b, ts []byte, l Line) []byte {
	b = append(b, ts...)
	b = append(b, ' ')
	b = append(b, l.Stream...)
	tag := byte(tagFull)
	if l.Partial {
		tag = tagPartial
	}
	b = append(b, ' ', tag, ' ')
	b = append(b, l.Text...)
	return append(b, '\n')
}

// ParseRecord parses one record of a log file (without its newline). The
// returned Line's Text aliases rec. Continued cannot be known from one
// record: it is true when the previous record of the stream was partial.
func ParseRecord(rec []byte) (Line, error) {
	var l Line
	ts, rest, ok := bytes.Cut(rec, []byte{' '})
	if !ok {
		return l, fmt.Errorf("log record %.40q: no time", rec)
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return l, fmt.Errorf("log record %.40q: %w", rec, err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != string(Stdout) && string(stream) != string(Stderr)) {
		return l, fmt.Errorf("log record %.40q: no stream", rec)
	}
	if len(rest) < 1 || (rest[0] != tagFull && rest[0] != tagPartial) || (len(rest) > 1 && rest[1] != ' ') {
		return l, fmt.Errorf("log record %.40q: no F/P tag", rec)
	}
	l.Time, l.Stream, l.Partial = t, Stream(stream), rest[0] == tagPartial
	if len(rest) > 2 {
		l.Text = rest[2:]
	} else {
		l.Text = []byte{}
	}
	return l, nil
}
