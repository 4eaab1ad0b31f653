package smtpserver

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// fakeReverse is a ReverseResolver for the server's logic: it answers a
// fixed outcome, or waits for its context to end when block is set.
type fakeReverse struct {
	host  postern.ClientHost
	block bool

	mu    sync.Mutex
	asked []netip.Addr
	dead  bool // the context it was given had a deadline
}

func (f *fakeReverse) LookupClientHost(ctx context.Context, ip netip.Addr) postern.ClientHost {
	f.mu.Lock()
	f.asked = append(f.asked, ip)
	_, f.dead = ctx.Deadline()
	f.mu.Unlock()
	if f.block {
		<-ctx.Done()
		return postern.ClientHost{Resolve: postern.ResolveTemp}
	}
	return f.host
}

func (f *fakeReverse) calls() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]netip.Addr(nil), f.asked...)
}

// seenAtConnect records what the connect stage saw of the client.
type seenAtConnect struct {
	mu   sync.Mutex
	conn clientSeen
}

type clientSeen struct {
	ClientName, ClientPTR string
	ClientResolve         postern.ClientResolve
}

func (s *seenAtConnect) filter() postern.Filter {
	return postern.ConnectFunc("seen", func(_ context.Context, c *postern.Conn) (postern.Verdict, error) {
		s.mu.Lock()
		s.conn = clientSeen{ClientName: c.ClientName, ClientPTR: c.ClientPTR, ClientResolve: c.ClientResolve}
		s.mu.Unlock()
		return postern.Pass, nil
	})
}

func (s *seenAtConnect) get() clientSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// oneMessage sends one message and returns its Received field (up to
// "by").
func oneMessage(t *testing.T, c *client, h *memHandoff) string {
	t.Helper()
	c.greet()
	expect(t, c.cmd("MAIL FROM:<a@example.org>"), "250")
	expect(t, c.cmd("RCPT TO:<b@example.net>"), "250")
	expect(t, c.cmd("DATA"), "354")
	c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	expect(t, c.reply(), "250 2.0.0")
	msgs := h.all()
	require.NotEmpty(t, msgs)
	data := string(msgs[len(msgs)-1].data)
	by := strings.Index(data, "\tby ")
	require.Positive(t, by, data)
	return data[:by]
}

func TestReverseDNSBeforeConnectStage(t *testing.T) {
	ok := postern.ClientHost{Resolve: postern.ResolveOK, Name: "mail.example.org", PTR: "mail.example.org"}
	for _, tc := range []struct {
		name     string
		host     postern.ClientHost
		want     clientSeen
		received string
	}{
		{"verified", ok, clientSeen{ClientName: "mail.example.org", ClientPTR: "mail.example.org", ClientResolve: postern.ResolveOK},
			"Received: from client.test (mail.example.org [127.0.0.1])\r\n"},
		{"forged", postern.ClientHost{Resolve: postern.ResolveForged, PTR: "bogus.example.gr.jp"},
			clientSeen{ClientPTR: "bogus.example.gr.jp", ClientResolve: postern.ResolveForged},
			"Received: from client.test (bogus.example.gr.jp [127.0.0.1] (may be forged))\r\n"},
		{"no PTR", postern.ClientHost{Resolve: postern.ResolveFail}, clientSeen{ClientResolve: postern.ResolveFail},
			"Received: from client.test ([127.0.0.1])\r\n"},
		{"temporary", postern.ClientHost{Resolve: postern.ResolveTemp, PTR: "slow.example"},
			clientSeen{ClientPTR: "slow.example", ClientResolve: postern.ResolveTemp},
			"Received: from client.test ([127.0.0.1])\r\n"},
		// A resolver that claims a name without OK does not make it a
		// verified one.
		{"name without OK", postern.ClientHost{Resolve: postern.ResolveForged, Name: "claimed.example", PTR: "claimed.example"},
			clientSeen{ClientPTR: "claimed.example", ClientResolve: postern.ResolveForged},
			"Received: from client.test (claimed.example [127.0.0.1] (may be forged))\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, seen := &memHandoff{}, &seenAtConnect{}
			rev := &fakeReverse{host: tc.host}
			_, addr := startServer(t, Config{Handoff: h, Policy: seen.filter(), ReverseDNS: rev})
			assert.Equal(t, tc.received, oneMessage(t, dial(t, addr), h))
			assert.Equal(t, tc.want, seen.get())
			assert.Equal(t, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, rev.calls())
			rev.mu.Lock()
			assert.True(t, rev.dead, "the lookup must be bounded")
			rev.mu.Unlock()
		})
	}
}

func TestReverseDNSSkippedAndBounded(t *testing.T) {
	t.Run("skipped", func(t *testing.T) {
		h, seen := &memHandoff{}, &seenAtConnect{}
		rev := &fakeReverse{host: postern.ClientHost{Resolve: postern.ResolveOK, Name: "x.example"}}
		_, addr := startServer(t, Config{Handoff: h, Policy: seen.filter(), ReverseDNS: rev,
			SkipReverseDNS: func(ip netip.Addr) bool { return ip.IsLoopback() }})
		assert.Equal(t, "Received: from client.test ([127.0.0.1])\r\n", oneMessage(t, dial(t, addr), h))
		assert.Empty(t, rev.calls())
		assert.Equal(t, postern.ResolveNone, seen.get().ClientResolve)
	})
	t.Run("timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// The resolver never answers by itself: the server's bound
			// (default 10 s) ends it, the outcome is TEMP and the client
			// is served.
			h, seen := &memHandoff{}, &seenAtConnect{}
			rev := &fakeReverse{block: true}
			_, l := startPipeServer(t, Config{Handoff: h, Policy: seen.filter(), ReverseDNS: rev})
			start := time.Now()
			assert.Equal(t, "Received: from client.test ([127.0.0.1])\r\n", oneMessage(t, dialPipe(t, l), h))
			assert.Equal(t, 10*time.Second, time.Since(start), "served once the lookup's bound ends")
			assert.Equal(t, postern.ResolveTemp, seen.get().ClientResolve)
		})
	})
	t.Run("negative timeout", func(t *testing.T) {
		_, err := New(Config{Handoff: &memHandoff{}, ReverseDNSTimeout: -time.Second})
		require.ErrorIs(t, err, ErrConfig)
	})
}

func TestReceivedClientSanitised(t *testing.T) {
	// An embedding program may set ClientName to anything; the Received
	// field must stay one comment.
	c := &postern.Conn{Remote: netip.MustParseAddrPort("[2001:db8::7]:25"), ClientName: "evil) (x\r\ny"}
	var b strings.Builder
	writeClient(&b, c)
	assert.Equal(t, "evil???x??y [IPv6:2001:db8::7]", b.String())
}

// FuzzReceivedClient: whatever names the resolver or an embedding program
// put in the Conn, the client part of the Received field stays on one
// line and inside its one comment (RFC 5322 §3.2.2: parentheses balance).
func FuzzReceivedClient(f *testing.F) {
	f.Add("mail.example.org", "mail.example.org", uint8(postern.ResolveOK), []byte{192, 0, 2, 1})
	f.Add("", "bogus.example.gr.jp", uint8(postern.ResolveForged), []byte{198, 51, 100, 7})
	f.Add("x) (y", "a\r\nb(", uint8(postern.ResolveForged), make([]byte, 16))
	f.Add("", "", uint8(postern.ResolveTemp), []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, name, ptr string, resolve uint8, ip []byte) {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		c := &postern.Conn{Remote: netip.AddrPortFrom(a, 25), ClientName: name, ClientPTR: ptr,
			ClientResolve: postern.ClientResolve(resolve % 6)}
		var b strings.Builder
		writeClient(&b, c)
		got := b.String()
		depth := 0
		for i := 0; i < len(got); i++ {
			switch ch := got[i]; {
			case ch < 0x20 || ch == 0x7f:
				t.Fatalf("control character in %q", got)
			case ch == '(':
				depth++
			case ch == ')':
				depth--
				if depth < 0 {
					t.Fatalf("unbalanced %q", got)
				}
			}
		}
		if depth != 0 {
			t.Fatalf("unbalanced %q", got)
		}
		if !strings.Contains(got, "["+a.Unmap().String()+"]") && !strings.Contains(got, "[IPv6:"+a.Unmap().String()+"]") {
			t.Fatalf("no address in %q", got)
		}
	})
}
