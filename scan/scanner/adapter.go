package scanner

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"
)

// Helpers for Scanner adapters (clamav, spamd, rspamd and yours).

// DialFunc dials a server; net.Dialer.DialContext is one.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// SplitAddr tells the network of a scanner address: "unix:/path", a path
// ("/run/clamav/clamd.ctl", or "@name" for a Linux abstract socket) is a
// Unix socket; "tcp:host:port" and "host:port" are TCP.
func SplitAddr(addr string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		network, address = "unix", strings.TrimPrefix(addr, "unix:")
	case strings.HasPrefix(addr, "/"), strings.HasPrefix(addr, "@"):
		network, address = "unix", addr
	case strings.HasPrefix(addr, "tcp:"):
		network, address = "tcp", strings.TrimPrefix(addr, "tcp:")
	default:
		network, address = "tcp", addr
	}
	if address == "" {
		return "", "", fmt.Errorf("%w: empty address %q", ErrConfig, addr)
	}
	if network == "tcp" {
		if _, _, err := net.SplitHostPort(address); err != nil {
			return "", "", fmt.Errorf("%w: address %q: %v", ErrConfig, addr, err)
		}
	}
	return network, address, nil
}

// Dial connects to network/address within dialTimeout and gives the
// connection one deadline for the whole exchange: timeout from now, or
// ctx's deadline if sooner. A cancelled ctx unblocks reads and writes at
// once. close stops that watch and closes the connection.
func Dial(ctx context.Context, dial DialFunc, network, address string, dialTimeout, timeout time.Duration) (conn net.Conn, close func(), err error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err = dial(dctx, network, address)
	if err != nil {
		return nil, nil, err
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	return conn, func() { stop(); conn.Close() }, nil
}

// SizedBody returns msg as a re-readable body and its size, for protocols
// that send the length first (spamd's Content-length, HTTP). A seekable
// msg is used in place from its current offset; any other is read into
// memory. Over max bytes it fails with ErrTooLarge.
func SizedBody(msg io.Reader, max int64) (io.ReadSeeker, int64, error) {
	if s, ok := msg.(io.ReadSeeker); ok {
		cur, err1 := s.Seek(0, io.SeekCurrent)
		end, err2 := s.Seek(0, io.SeekEnd)
		if err1 == nil && err2 == nil {
			if _, err := s.Seek(cur, io.SeekStart); err != nil {
				return nil, 0, err
			}
			if end-cur > max {
				return nil, 0, fmt.Errorf("%w: %d bytes, over %d", ErrTooLarge, end-cur, max)
			}
			return s, end - cur, nil
		}
	}
	b, err := io.ReadAll(io.LimitReader(msg, max+1))
	if err != nil {
		return nil, 0, fmt.Errorf("read message: %w", err)
	}
	if int64(len(b)) > max {
		return nil, 0, fmt.Errorf("%w: over %d bytes", ErrTooLarge, max)
	}
	return bytes.NewReader(b), int64(len(b)), nil
}

// Failover asks the servers in order until one answers: try(i) scans at
// server i, addrs[i]. Between tries body is rewound to where it was and
// the failure is logged as a warning. It stops early when ctx is done.
// The error is Failed(name, ...) of every server's failure.
func Failover(ctx context.Context, log *slog.Logger, name string, addrs []string, body io.Seeker,
	try func(i int) (Result, error)) (Result, error) {
	start, err := body.Seek(0, io.SeekCurrent)
	if err != nil {
		return Result{}, Failed(name, fmt.Errorf("read message: %w", err))
	}
	var errs []error
	for i := range addrs {
		if i > 0 {
			LogFailover(ctx, log, name, errs[len(errs)-1])
			if _, err := body.Seek(start, io.SeekStart); err != nil {
				break
			}
		}
		res, err := try(i)
		if err == nil {
			res.Server = addrs[i]
			return res, nil
		}
		errs = append(errs, ServerError(addrs[i], err))
		if ctx.Err() != nil {
			break
		}
	}
	return Result{}, Failed(name, errs...)
}

// LogFailover logs, as a warning, that the scanner name goes on to its
// next server after the failure err (a ServerError). A nil log discards.
func LogFailover(ctx context.Context, log *slog.Logger, name string, err error) {
	if log == nil {
		return
	}
	attrs := []slog.Attr{slog.String("scanner", name)}
	if e, ok := err.(*Error); ok && e.Server != "" && e.Err != nil {
		attrs = append(attrs, slog.String("server", e.Server), slog.String("error", withoutAddress(e.Err)))
	} else {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	log.LogAttrs(ctx, slog.LevelWarn, name+" failed, trying the next server", attrs...)
}
