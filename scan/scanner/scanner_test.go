package scanner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

var errProto = errors.New("protocol error")

func TestErrorText(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3310},
		Err: errors.New("connect: connection refused")}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"one server", Failed("clamav", ServerError("127.0.0.1:3310", fmt.Errorf("%w: %q", errProto, "x"))),
			`clamav: 127.0.0.1:3310: protocol error: "x"`},
		{"network error without its address", Failed("clamav", ServerError("127.0.0.1:3310", refused)),
			"clamav: 127.0.0.1:3310: dial: connect: connection refused"},
		{"wrapped network error", Failed("spamd", ServerError("127.0.0.1:3310", fmt.Errorf("send message: %w", refused))),
			"spamd: 127.0.0.1:3310: send message: dial: connect: connection refused"},
		{"several servers", Failed("clamav", ServerError("127.0.0.1:3310", refused), ServerError("/run/c.ctl", errProto)),
			"clamav: 127.0.0.1:3310: dial: connect: connection refused; /run/c.ctl: protocol error"},
		{"no server's", Failed("rspamd", fmt.Errorf("%w: over 5 bytes", ErrTooLarge)),
			"rspamd: message too large for the scanner: over 5 bytes"},
		{"no failure given", Failed("x"), "x: failed"},
		{"already named", Failed("clamav", Failed("clamav", ServerError("a:1", errProto))), "clamav: a:1: protocol error"},
		{"without a server, the network error keeps its address", Failed("clamav", refused),
			"clamav: dial tcp 127.0.0.1:3310: connect: connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.EqualError(t, tc.err, tc.want)
			assert.ErrorIs(t, tc.err, ErrScanner)
			var e *Error
			require.ErrorAs(t, tc.err, &e)
		})
	}
	err := Failed("clamav", ServerError("a:1", refused), ServerError("b:2", fmt.Errorf("%w: %w", errProto, ErrTooLarge)))
	assert.ErrorIs(t, err, errProto, "each server's cause is reachable")
	assert.ErrorIs(t, err, ErrTooLarge)
	var op *net.OpError
	assert.ErrorAs(t, err, &op)
	assert.NotErrorIs(t, errors.New("other"), ErrScanner)
}

// seekCounter is a message reader that counts rewinds.
type seekCounter struct {
	*strings.Reader
	seeks int
}

func (s *seekCounter) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekStart {
		s.seeks++
	}
	return s.Reader.Seek(off, whence)
}

func TestFailover(t *testing.T) {
	var logs testutil.LogBuffer
	body := &seekCounter{Reader: strings.NewReader("message")}
	_, _ = body.Seek(3, io.SeekStart) // the scan starts where the reader stands
	body.seeks = 0
	var seen []string
	res, err := Failover(context.Background(), logs.Logger(), "spamd", []string{"a:1", "b:2", "c:3"}, body,
		func(i int) (Result, error) {
			b, _ := io.ReadAll(body)
			seen = append(seen, string(b))
			if i < 2 {
				return Result{}, fmt.Errorf("%w: server %d", errProto, i)
			}
			return Result{Scanner: "spamd", Scored: true}, nil
		})
	require.NoError(t, err)
	assert.Equal(t, "c:3", res.Server)
	assert.Equal(t, []string{"sage", "sage", "sage"}, seen, "rewound to where it stood before each try")
	recs := logs.Records(t, "spamd failed, trying the next server")
	require.Len(t, recs, 2)
	assert.Equal(t, "a:1", recs[0]["server"])
	assert.Equal(t, "protocol error: server 0", recs[0]["error"], "the log names the server in its own key")
	assert.Equal(t, "spamd", recs[0]["scanner"])

	_, err = Failover(context.Background(), nil, "spamd", []string{"a:1", "b:2"}, strings.NewReader("m"),
		func(i int) (Result, error) { return Result{}, errProto })
	assert.EqualError(t, err, "spamd: a:1: protocol error; b:2: protocol error")

	ctx, cancel := context.WithCancel(context.Background())
	tries := 0
	_, err = Failover(ctx, nil, "spamd", []string{"a:1", "b:2"}, strings.NewReader("m"), func(int) (Result, error) {
		tries++
		cancel()
		return Result{}, context.Canceled
	})
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, tries, "a cancelled scan tries no further server")
}

func TestSizedBody(t *testing.T) {
	r := strings.NewReader("0123456789")
	_, _ = r.Seek(2, io.SeekStart)
	body, n, err := SizedBody(r, 8)
	require.NoError(t, err)
	assert.Equal(t, int64(8), n, "from the current offset")
	assert.Same(t, r, body, "a seekable message is used in place")

	_, _, err = SizedBody(strings.NewReader("0123456789"), 9)
	assert.ErrorIs(t, err, ErrTooLarge)
	body, n, err = SizedBody(io.MultiReader(strings.NewReader("0123")), 4)
	require.NoError(t, err)
	assert.Equal(t, int64(4), n)
	b, _ := io.ReadAll(body)
	assert.Equal(t, "0123", string(b))
	_, _, err = SizedBody(io.MultiReader(strings.NewReader("01234")), 4)
	assert.ErrorIs(t, err, ErrTooLarge)
}

func TestDialCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	conn, done, err := Dial(ctx, (&net.Dialer{}).DialContext, "tcp", ln.Addr().String(), time.Minute, time.Hour)
	require.NoError(t, err)
	defer done()
	cancel()
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	require.ErrorAs(t, err, &ne, "a cancelled context unblocks the read")
	assert.True(t, ne.Timeout())
}

func TestSplitAddr(t *testing.T) {
	tests := []struct{ in, network, address string }{
		{"127.0.0.1:3310", "tcp", "127.0.0.1:3310"},
		{"[::1]:783", "tcp", "[::1]:783"},
		{"tcp:localhost:11333", "tcp", "localhost:11333"},
		{"/run/clamav/clamd.ctl", "unix", "/run/clamav/clamd.ctl"},
		{"unix:relative.sock", "unix", "relative.sock"},
		{"@abstract", "unix", "@abstract"},
	}
	for _, tc := range tests {
		n, a, err := SplitAddr(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.network, n)
		assert.Equal(t, tc.address, a)
	}
	for _, bad := range []string{"", "unix:", "localhost", "tcp:"} {
		_, _, err := SplitAddr(bad)
		assert.ErrorIs(t, err, ErrConfig, bad)
	}
}

func TestResultString(t *testing.T) {
	for want, r := range map[string]Result{
		"no result":                 {},
		"clamd: clean":              {Scanner: "clamd"},
		"clamd: infected: Eicar, X": {Scanner: "clamd", Infected: true, Viruses: []string{"Eicar", "X"}},
		"spamd: score 6.3/5.0 spam": {Scanner: "spamd", Scored: true, Score: 6.3, Threshold: 5, Spam: true},
		"rspamd: score 7.2/15.0 action=add header symbols=A,B": {Scanner: "rspamd", Scored: true, Score: 7.2,
			Threshold: 15, Action: "add header", Symbols: []Symbol{{Name: "A"}, {Name: "B"}}},
	} {
		assert.Equal(t, want, r.String())
	}
}

func TestEnvelopeOf(t *testing.T) {
	assert.Equal(t, &Envelope{}, EnvelopeOf(nil, nil))
	tx := &postern.Txn{ID: "Q1", From: "a@example.org", Rcpts: []*postern.Rcpt{{Addr: "b@example.com"}}}
	c := &postern.Conn{HELO: "mx.example.org", AuthUser: "alice"}
	env := EnvelopeOf(c, tx)
	assert.Equal(t, "a@example.org", env.From)
	assert.Equal(t, []string{"b@example.com"}, env.Rcpts)
	assert.Equal(t, "Q1", env.QueueID)
	assert.Equal(t, "mx.example.org", env.Helo)
	assert.Equal(t, "alice", env.User)
}

func TestFunc(t *testing.T) {
	s := Func("canned", func(_ context.Context, r io.Reader, _ *Envelope) (Result, error) {
		b, _ := io.ReadAll(r)
		return Result{Infected: bytes.Contains(b, []byte("EICAR")), Viruses: []string{"Eicar"}}, nil
	})
	assert.Equal(t, "canned", s.Name())
	res, err := s.Scan(context.Background(), strings.NewReader("X5O EICAR"), nil)
	require.NoError(t, err)
	assert.True(t, res.Infected)
}
