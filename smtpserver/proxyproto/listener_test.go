package proxyproto

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
)

// ioTimeout only keeps a broken test from hanging; nothing asserts it.
const ioTimeout = 10 * time.Second

// accepted is what the server behind the listener saw of a connection.
type accepted struct {
	remote, local string
	line          string // the first line it read
	err           error  // what reading it gave
	header        Header
}

// serve accepts from l, greets each connection and reads one line.
func serve(t *testing.T, l net.Listener) <-chan accepted {
	t.Helper()
	out := make(chan accepted, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				a := accepted{remote: c.RemoteAddr().String(), local: c.LocalAddr().String()}
				if pc, ok := c.(*Conn); ok {
					a.header = pc.Header()
				}
				_, _ = io.WriteString(c, "220 mx.test ESMTP\r\n")
				a.line, a.err = bufio.NewReader(c).ReadString('\n')
				out <- a
			}()
		}
	}()
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	return out
}

func newListener(t *testing.T, cfg Config) *Listener {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l, err := NewListener(inner, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// dialFrom connects from a chosen loopback address.
func dialFrom(t *testing.T, src string, addr net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: ioTimeout}
	c, err := d.Dial("tcp", addr.String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	return c
}

func next(t *testing.T, ch <-chan accepted) accepted {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(ioTimeout):
		t.Fatal("the server saw no connection")
		return accepted{}
	}
}

func balancers(ps ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// A balancer's header names the client: version 1 and 2, with the client's
// early bytes kept; a LOCAL header keeps the balancer's own address.
func TestListenerReadsHeaders(t *testing.T) {
	l := newListener(t, Config{Balancers: balancers("127.0.0.1/32")})
	ch := serve(t, l)
	v2hdr, err := Header{Source: ap("[2001:db8::7]:40001"), Dest: ap("[2001:db8::25]:25"),
		TLVs: []TLV{{Type: 0x02, Value: []byte("mx.example")}}}.AppendV2(nil)
	require.NoError(t, err)
	local, err := Header{Local: true}.AppendV2(nil)
	require.NoError(t, err)
	for _, tc := range []struct {
		name           string
		send           []byte
		remote, locale string
		tlv            bool
	}{
		{"v1", []byte("PROXY TCP4 192.0.2.9 198.51.100.25 40000 25\r\nEHLO early.example\r\n"), "192.0.2.9:40000", "198.51.100.25:25", false},
		{"v2", append(v2hdr, "EHLO six.example\r\n"...), "[2001:db8::7]:40001", "[2001:db8::25]:25", true},
		{"v2 local", append(local, "NOOP\r\n"...), "127.0.0.1:", "127.0.0.1:", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, "127.0.0.1", l.Addr())
			_, err := c.Write(tc.send)
			require.NoError(t, err)
			a := next(t, ch)
			require.NoError(t, a.err)
			assert.True(t, strings.HasPrefix(a.remote, tc.remote), a.remote)
			assert.True(t, strings.HasPrefix(a.local, tc.locale), a.local)
			assert.Contains(t, a.line, "\r\n")
			assert.NotContains(t, a.line, "PROXY")
			if tc.tlv {
				require.Len(t, a.header.TLVs, 1)
				assert.Equal(t, "mx.example", string(a.header.TLVs[0].Value))
			}
		})
	}
	st := l.Stats()
	assert.EqualValues(t, 2, st.Proxied)
	assert.EqualValues(t, 1, st.Local)
}

// A header is read byte by byte as it trickles in: the listener waits for
// the rest (within the timeout), the server sees nothing of it.
func TestListenerHeaderInPieces(t *testing.T) {
	l := newListener(t, Config{Balancers: balancers("127.0.0.0/8")})
	ch := serve(t, l)
	c := dialFrom(t, "127.0.0.1", l.Addr())
	for _, b := range []byte("PROXY TCP4 192.0.2.10 198.51.100.25 1234 25\r\n") {
		_, err := c.Write([]byte{b})
		require.NoError(t, err)
	}
	_, err := io.WriteString(c, "QUIT\r\n")
	require.NoError(t, err)
	a := next(t, ch)
	assert.Equal(t, "192.0.2.10:1234", a.remote)
	assert.Equal(t, "QUIT\r\n", a.line)
}

// A balancer connection without a valid header, with one too large or
// too late, is closed unseen; others go on being served.
func TestListenerRefusesBadBalancerConnections(t *testing.T) {
	buf := &testutil.LogBuffer{}
	l := newListener(t, Config{Balancers: balancers("127.0.0.1/32"), Timeout: 200 * time.Millisecond,
		MaxHeaderBytes: 300, Logger: buf.Logger()})
	ch := serve(t, l)
	big, err := Header{Source: ap("192.0.2.1:1"), Dest: ap("192.0.2.2:25"),
		TLVs: []TLV{{Type: 0xE0, Value: make([]byte, 400)}}}.AppendV2(nil)
	require.NoError(t, err)
	for name, send := range map[string][]byte{
		"no header":       []byte("EHLO sneaky.example\r\n"),
		"broken v1":       []byte("PROXY TCP4 999.0.2.1 198.51.100.1 1 25\r\n"),
		"oversized v2":    big,
		"late (silent)":   nil,
		"unfinished v1":   []byte("PROXY TCP4 192.0.2.1 "),
		"v2 of version 3": append(append([]byte(nil), v2Sig...), 0x31, 0x11, 0, 0),
	} {
		c := dialFrom(t, "127.0.0.1", l.Addr())
		if send != nil {
			_, _ = c.Write(send)
		}
		got, err := io.ReadAll(c)
		assert.Empty(t, got, "%s: the server must not greet it", name)
		var ne net.Error
		assert.False(t, errors.As(err, &ne) && ne.Timeout(), "%s: closed, not left open: %v", name, err)
	}
	assert.EqualValues(t, 6, l.Stats().Invalid)
	assert.Len(t, buf.Records(t, "PROXY header refused"), 6)

	c := dialFrom(t, "127.0.0.1", l.Addr())
	_, err = io.WriteString(c, "PROXY TCP4 192.0.2.11 198.51.100.25 1 25\r\nQUIT\r\n")
	require.NoError(t, err)
	assert.Equal(t, "192.0.2.11:1", next(t, ch).remote, "still serving")
}

// Other addresses are served as they are; one that sends a header (naming
// an address of its choice) is closed at its first read.
func TestListenerDirectClients(t *testing.T) {
	buf := &testutil.LogBuffer{}
	l := newListener(t, Config{IsBalancer: func(ip netip.Addr) bool { return ip == netip.MustParseAddr("127.0.0.9") },
		Logger: buf.Logger()})
	ch := serve(t, l)

	c := dialFrom(t, "127.0.0.1", l.Addr())
	_, err := io.WriteString(c, "EHLO direct.example\r\n")
	require.NoError(t, err)
	a := next(t, ch)
	assert.True(t, strings.HasPrefix(a.remote, "127.0.0.1:"), a.remote)
	assert.Equal(t, "EHLO direct.example\r\n", a.line)

	for _, spoof := range []string{
		"PROXY TCP4 192.0.2.66 198.51.100.25 1 25\r\nEHLO spoof.example\r\n",
		string(v2Sig) + "\x21\x11\x00\x0c",
	} {
		c := dialFrom(t, "127.0.0.1", l.Addr())
		_, err := io.WriteString(c, spoof)
		require.NoError(t, err)
		a := next(t, ch)
		assert.ErrorIs(t, a.err, ErrUnexpectedHeader)
		assert.True(t, strings.HasPrefix(a.remote, "127.0.0.1:"), "never the spoofed address: %s", a.remote)
	}
	st := l.Stats()
	assert.EqualValues(t, 3, st.Direct)
	assert.EqualValues(t, 2, st.Unexpected)
	assert.Len(t, buf.Records(t, "PROXY header from an address that is not a balancer"), 2)

	// A client that sends a start of a signature and leaves loses nothing
	// of what it sent.
	c = dialFrom(t, "127.0.0.1", l.Addr())
	_, err = io.WriteString(c, "P")
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	a = next(t, ch)
	assert.Equal(t, "P", a.line)
}

func TestListenerConfig(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer inner.Close()
	for _, cfg := range []Config{
		{},
		{Balancers: balancers("10.0.0.0/8"), IsBalancer: func(netip.Addr) bool { return true }},
		{Balancers: balancers("10.0.0.0/8"), Timeout: -1},
		{Balancers: balancers("10.0.0.0/8"), MaxHeaderBytes: 100},
		{Balancers: []netip.Prefix{{}}},
	} {
		_, err := NewListener(inner, cfg)
		assert.ErrorIs(t, err, ErrConfig, "%+v", cfg)
	}
	_, err = NewListener(nil, Config{Balancers: balancers("10.0.0.0/8")})
	assert.ErrorIs(t, err, ErrConfig)
}

// Close ends header reads under way and Accept.
func TestListenerClose(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l, err := NewListener(inner, Config{Balancers: balancers("127.0.0.1/32"), Timeout: time.Hour})
	require.NoError(t, err)
	c := dialFrom(t, "127.0.0.1", l.Addr())
	_, err = io.WriteString(c, "PROXY TCP4 ")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	time.Sleep(50 * time.Millisecond) // let the header read start; not asserted
	require.NoError(t, l.Close())
	assert.ErrorIs(t, <-done, net.ErrClosed)
	got, _ := io.ReadAll(c)
	assert.Empty(t, got)
	assert.NoError(t, l.Close(), "Close twice")
}
