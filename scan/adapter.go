package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"
)

// Helpers for Scanner adapters (clamav, spamd, rspamd and yours).

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
// server i. Between tries body is rewound to where it was and the failure
// is logged as a warning. It stops early when ctx is done. The error
// wraps ErrScanner and every server's failure, named by addrs.
func Failover(ctx context.Context, log *slog.Logger, name string, addrs []string, body io.Seeker,
	try func(i int) (Result, error)) (Result, error) {
	start, err := body.Seek(0, io.SeekCurrent)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %s: %w", ErrScanner, name, err)
	}
	var errs []error
	for i := range addrs {
		if i > 0 {
			log.LogAttrs(ctx, slog.LevelWarn, name+" failed, trying the next server",
				slog.String("server", addrs[i-1]), slog.String("error", errs[len(errs)-1].Error()))
			if _, err := body.Seek(start, io.SeekStart); err != nil {
				break
			}
		}
		res, err := try(i)
		if err == nil {
			res.Server = addrs[i]
			return res, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addrs[i], err))
		if ctx.Err() != nil {
			break
		}
	}
	return Result{}, fmt.Errorf("%w: %s: %w", ErrScanner, name, errors.Join(errs...))
}
