package route

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/route/resolver/dnstest"
)

func newTestTransport(t testing.TB, r *Router, cfg TransportConfig) *Transport {
	t.Helper()
	cfg.Router = r
	if cfg.Hostname == "" {
		cfg.Hostname = "relay.test"
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = 10 * time.Second
	}
	tr, err := NewTransport(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	return tr
}

// mtTransport routes with a mailertable only.
func mtTransport(t testing.TB, table string, cfg TransportConfig) *Transport {
	t.Helper()
	return newTestTransport(t, newTestRouter(t, nil, RouterConfig{Mailertable: mustTable(t, table)}), cfg)
}

func replies(res []queue.Result) []string {
	var out []string
	for _, r := range res {
		out = append(out, r.Reply.Error())
	}
	return out
}

func TestDeliverSMTP(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sinkConfig{maxSize: 1 << 20})
	var logs testutil.LogBuffer
	tr := mtTransport(t, "example.net esmtp:"+hostPort(s.addr)+"\n", TransportConfig{Logger: logs.Logger()})
	d := delivery("a@sender.test", "b@example.net", "c@example.net")
	assert.Equal(t, "esmtp:"+hostPort(s.addr), tr.Destination("b@example.net"))

	res := tr.Deliver(bg, d)
	require.Len(t, res, 2)
	for _, r := range res {
		assert.Equal(t, "250 2.0.0 Ok: queued as SINK1", r.Reply.Error())
		assert.Equal(t, "127.0.0.1", r.RemoteMTA)
		assert.True(t, r.Relayed, "no DSN at the next hop")
	}
	msgs := s.messages()
	require.Len(t, msgs, 1)
	m := msgs[0]
	assert.Equal(t, "a@sender.test", m.From)
	assert.Equal(t, []string{"b@example.net", "c@example.net"}, m.To)
	assert.Equal(t, testMessage, m.Data)
	assert.Equal(t, "relay.test", m.HELO)
	assert.False(t, m.TLS)
	assert.Equal(t, int64(len(testMessage)), m.Mail.Size)
	recs := logs.Records(t, "delivery")
	require.Len(t, recs, 2)
	assert.Equal(t, "Q1", recs[0]["queue_id"])
	assert.Equal(t, "sent", recs[0]["action"])
	assert.Equal(t, "127.0.0.1", recs[0]["relay"])
	assert.EqualValues(t, 250, recs[0]["code"])

	// Null sender (a bounce).
	res = tr.Deliver(bg, delivery("", "b@example.net"))
	assert.True(t, res[0].Reply.Code == 250)
	assert.Equal(t, "", s.messages()[1].From)
}

func TestDeliverPerRecipientReplies(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sinkConfig{rcpt: func(to string) error {
		switch strings.Split(to, "@")[0] {
		case "unknown":
			return smtpErr(550, [3]int{5, 1, 1}, "User unknown")
		case "grey":
			return smtpErr(450, [3]int{4, 2, 0}, "Greylisted, try again\nin five minutes")
		}
		return nil
	}})
	tr := mtTransport(t, "example.net esmtp:"+hostPort(s.addr)+"\n", TransportConfig{})
	res := tr.Deliver(bg, delivery("a@sender.test", "ok@example.net", "unknown@example.net", "grey@example.net", "ok@example.net", "ok2@example.net"))
	assert.Equal(t, []string{
		"250 2.0.0 Ok: queued as SINK1",
		"550 5.1.1 User unknown",
		// go-smtp's server puts the enhanced code on the last line only;
		// postern's parser keeps it only when every line has it.
		"450 Greylisted, try again 4.2.0 in five minutes",
		"250 2.0.0 Ok: queued as SINK1", // the same address is sent once
		"250 2.0.0 Ok: queued as SINK1",
	}, replies(res))
	assert.Equal(t, []string{"Greylisted, try again", "4.2.0 in five minutes"}, res[2].Reply.Lines)
	assert.True(t, res[2].Reply.Temporary())
	assert.Equal(t, "127.0.0.1", res[1].RemoteMTA)
	require.Len(t, s.messages(), 1)
	assert.Equal(t, []string{"ok@example.net", "ok2@example.net"}, s.messages()[0].To)

	// Nobody accepted: no DATA.
	res = tr.Deliver(bg, delivery("a@sender.test", "unknown@example.net"))
	assert.Equal(t, []string{"550 5.1.1 User unknown"}, replies(res))
	assert.Len(t, s.messages(), 1)

	// The reply to DATA applies to every accepted recipient.
	s2 := startSink(t, "127.0.0.1:0", sinkConfig{data: func(*received) error {
		return smtpErr(554, [3]int{5, 7, 1}, "Message refused: spam")
	}})
	tr2 := mtTransport(t, "example.net esmtp:"+hostPort(s2.addr)+"\n", TransportConfig{})
	res = tr2.Deliver(bg, delivery("a@sender.test", "x@example.net", "y@example.net"))
	assert.Equal(t, []string{"554 5.7.1 Message refused: spam", "554 5.7.1 Message refused: spam"}, replies(res))
}

func TestDeliverSTARTTLS(t *testing.T) {
	cert, pool := testCert(t, "mx.test")
	s := startSink(t, "127.0.0.1:0", sinkConfig{tls: &tls.Config{Certificates: []tls.Certificate{cert}}})
	table := "example.net esmtp:" + hostPort(s.addr) + "\n"

	for _, pol := range []TLSPolicy{TLSMay, TLSEncrypt} {
		tr := mtTransport(t, table, TransportConfig{TLS: pol})
		res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
		require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
		msgs := s.messages()
		assert.True(t, msgs[len(msgs)-1].TLS, "policy %v", pol)
		assert.Equal(t, "relay.test", msgs[len(msgs)-1].HELO, "EHLO again after STARTTLS")
	}
	assert.Contains(t, s.ln.commands(), "EHLO relay.test")
	assert.NotContains(t, s.ln.commands(), "EHLO localhost")

	tr := mtTransport(t, table, TransportConfig{TLS: TLSNone})
	res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	require.Equal(t, 250, res[0].Reply.Code)
	assert.False(t, s.messages()[2].TLS)

	// Verified: the certificate names the host we connect to (here the
	// address of the bracketed host).
	tr = mtTransport(t, table, TransportConfig{TLS: TLSVerify, TLSConfig: &tls.Config{RootCAs: pool}})
	res = tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.True(t, s.messages()[3].TLS)

	// Verification against a name the certificate does not carry.
	d := startDNS(t)
	addRR(t, d, "wrong.test. 300 IN A 127.0.0.1")
	_, port, _ := net.SplitHostPort(s.addr)
	r := newTestRouter(t, d, RouterConfig{Mailertable: mustTable(t, "example.net esmtp:[wrong.test]:"+port+"\n")})
	tr = newTestTransport(t, r, TransportConfig{TLS: TLSVerify, TLSConfig: &tls.Config{RootCAs: pool}})
	res = tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	assert.Equal(t, 451, res[0].Reply.Code)
	assert.Equal(t, "4.7.5", res[0].Reply.Enhanced.String())
	assert.Contains(t, res[0].Reply.Text(), "TLS handshake with wrong.test[127.0.0.1]:"+port+" failed")
	assert.Len(t, s.messages(), 4)
}

func TestDeliverREQUIRETLS(t *testing.T) {
	cert, pool := testCert(t, "mx.test")
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	with := startSink(t, "127.0.0.1:0", sinkConfig{tls: tlsCfg, requireTLS: true})
	without := startSink(t, "127.0.0.1:0", sinkConfig{tls: tlsCfg})
	table := "with.example esmtp:" + hostPort(with.addr) + "\nwithout.example esmtp:" + hostPort(without.addr) + "\n"
	// The policy is "may", but REQUIRETLS asks for a verified session.
	tr := mtTransport(t, table, TransportConfig{TLSConfig: &tls.Config{RootCAs: pool}})
	for _, dom := range []string{"with.example", "without.example"} {
		d := delivery("a@sender.test", "b@"+dom)
		d.Envelope.RequireTLS = true
		res := tr.Deliver(bg, d)
		if dom == "with.example" {
			require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
			assert.True(t, with.messages()[0].Mail.RequireTLS)
			assert.True(t, with.messages()[0].TLS)
		} else {
			assert.Equal(t, 550, res[0].Reply.Code)
			assert.Equal(t, "5.7.30", res[0].Reply.Enhanced.String())
		}
	}
	assert.Empty(t, without.messages())
}

func TestDeliverTLSRequiredNotOffered(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sinkConfig{})
	tr := mtTransport(t, "example.net esmtp:"+hostPort(s.addr)+"\n", TransportConfig{TLS: TLSEncrypt})
	res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	assert.Equal(t, "451 4.7.4 TLS is required, but was not offered by host "+hostPort(s.addr), res[0].Reply.Error())
	assert.Empty(t, s.messages())
}

func TestDeliverTLSFailureFallsBackToPlain(t *testing.T) {
	cert, _ := testCert(t, "mx.test")
	s := startSink(t, "127.0.0.1:0", sinkConfig{tls: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}})
	tr := mtTransport(t, "example.net esmtp:"+hostPort(s.addr)+"\n", TransportConfig{TLSConfig: &tls.Config{MaxVersion: tls.VersionTLS12}})
	res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.False(t, s.messages()[0].TLS)
	assert.EqualValues(t, 2, s.accepts(), "one failed TLS session, one plain")
}

func TestDeliverDSNParameters(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sinkConfig{dsn: true})
	tr := mtTransport(t, "example.net esmtp:"+hostPort(s.addr)+"\n", TransportConfig{})
	d := delivery("a@sender.test", "b@example.net", "c@example.net", "d@example.net")
	d.Envelope.Ret, d.Envelope.EnvID = "HDRS", "QUEUE-ID+1"
	d.Recipients[0].Notify = []string{"SUCCESS", "FAILURE"}
	d.Recipients[0].ORcptType, d.Recipients[0].ORcpt = "rfc822", "orig@example.net"
	d.Recipients[1].Notify = []string{"NEVER"}
	d.Recipients[2].ORcptType, d.Recipients[2].ORcpt = "rfc822", "josé@example.net"
	res := tr.Deliver(bg, d)
	for _, r := range res {
		require.Equal(t, 250, r.Reply.Code)
		assert.False(t, r.Relayed, "the next hop offers DSN")
	}
	m := s.messages()[0]
	assert.Equal(t, smtp.DSNReturnHeaders, m.Mail.Return)
	assert.Equal(t, "QUEUE-ID+1", m.Mail.EnvelopeID)
	assert.Equal(t, []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}, m.Rcpt[0].Notify)
	assert.Equal(t, smtp.DSNAddressTypeRFC822, m.Rcpt[0].OriginalRecipientType)
	assert.Equal(t, "orig@example.net", m.Rcpt[0].OriginalRecipient)
	assert.Equal(t, []smtp.DSNNotify{smtp.DSNNotifyNever}, m.Rcpt[1].Notify)
	assert.Equal(t, smtp.DSNAddressTypeUTF8, m.Rcpt[2].OriginalRecipientType)
	assert.Equal(t, "josé@example.net", m.Rcpt[2].OriginalRecipient)
}

func TestDeliverSMTPUTF8(t *testing.T) {
	plain := startSink(t, "127.0.0.1:0", sinkConfig{})
	utf8 := startSink(t, "127.0.0.1:0", sinkConfig{utf8: true})
	table := "plain.example esmtp:" + hostPort(plain.addr) + "\nutf8.example esmtp:" + hostPort(utf8.addr) + "\n"
	tr := mtTransport(t, table, TransportConfig{})

	res := tr.Deliver(bg, delivery("a@sender.test", "jösé@plain.example"))
	assert.Equal(t, 550, res[0].Reply.Code)
	assert.Equal(t, "5.6.7", res[0].Reply.Enhanced.String())
	assert.Empty(t, plain.messages())

	// SMTPUTF8 asked for, but all ASCII: no need for it.
	d := delivery("a@sender.test", "b@plain.example")
	d.Envelope.SMTPUTF8 = true
	res = tr.Deliver(bg, d)
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.False(t, plain.messages()[0].Mail.UTF8)

	// A UTF-8 header needs it.
	d = delivery("a@sender.test", "b@plain.example")
	d.Envelope.SMTPUTF8 = true
	msg := "Subject: Grüße\r\n\r\nbody\r\n"
	d.Message, d.Size = strings.NewReader(msg), int64(len(msg))
	res = tr.Deliver(bg, d)
	assert.Equal(t, "5.6.7", res[0].Reply.Enhanced.String())

	res = tr.Deliver(bg, func() *queue.Delivery {
		d := delivery("ä@sender.test", "jösé@utf8.example")
		d.Envelope.SMTPUTF8 = true
		return d
	}())
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.True(t, utf8.messages()[0].Mail.UTF8)
	assert.Equal(t, []string{"jösé@utf8.example"}, utf8.messages()[0].To)
}

func TestDeliverSizeLimit(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sinkConfig{maxSize: 20})
	tr := mtTransport(t, "example.net esmtp:"+hostPort(s.addr)+"\n", TransportConfig{})
	res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	assert.Equal(t, 552, res[0].Reply.Code)
	assert.Equal(t, "5.3.4", res[0].Reply.Enhanced.String())
	assert.Contains(t, res[0].Reply.Text(), "exceeds size limit 20")
	assert.Empty(t, s.messages())
}

// mxSetup serves example.net with MX 10 mx1 (192.0.2.2) and MX 20 mx2
// (192.0.2.3) on one port; sinks on the given loopback addresses, which
// testNetDialer reaches for the TEST-NET ones. The DNS answers are not
// loopback: an MX pointing at loopback is a mail loop.
func mxSetup(t *testing.T, up ...string) (*dnstest.Server, int, map[string]*sink) {
	t.Helper()
	port := freePortOn(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	d := startDNS(t)
	addRR(t, d,
		"example.net. 300 IN MX 10 mx1.example.net.",
		"example.net. 300 IN MX 20 mx2.example.net.",
		"mx1.example.net. 300 IN A 192.0.2.2",
		"mx2.example.net. 300 IN A 192.0.2.3",
	)
	sinks := map[string]*sink{}
	for _, ip := range up {
		sinks[ip] = startSink(t, net.JoinHostPort(ip, strconv.Itoa(port)), sinkConfig{})
	}
	return d, port, sinks
}

// testNetDialer dials 127.0.0.N for 192.0.2.N (TEST-NET-1, RFC 5737).
func testNetDialer(ctx context.Context, network, addr string) (net.Conn, error) {
	if rest, ok := strings.CutPrefix(addr, "192.0.2."); ok {
		addr = "127.0.0." + rest
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// An MX record pointing at loopback is a mail loop whatever port the
// router dials: DNS must not reach this host's own services.
func TestDeliverMXToLoopback(t *testing.T) {
	d := startDNS(t)
	addRR(t, d,
		"loop.example. 300 IN MX 10 mx.loop.example.",
		"mx.loop.example. 300 IN A 127.0.0.1",
		"implicit.example. 300 IN A 127.0.0.9",
		"zero.example. 300 IN MX 10 mx.zero.example.",
		"mx.zero.example. 300 IN A 0.0.0.0",
		"v6.example. 300 IN AAAA ::1",
	)
	sk := startSink(t, "127.0.0.1:0", sinkConfig{})
	_, port, _ := strings.Cut(hostPort(sk.addr), ":")
	p, _ := strconv.Atoi(port)
	r := newTestRouter(t, d, RouterConfig{Port: uint16(p), ListenAddrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:2525")}})
	tr := newTestTransport(t, r, TransportConfig{})
	for _, rcpt := range []string{"b@loop.example", "b@implicit.example", "b@zero.example", "b@v6.example", "b@[127.0.0.1]", "b@[IPv6:::1]", "b@[IPv6:::ffff:127.0.0.1]"} {
		res := tr.Deliver(bg, delivery("a@sender.test", rcpt))
		assert.Equal(t, 554, res[0].Reply.Code, "%s: %s", rcpt, res[0].Reply.Error())
		assert.Contains(t, res[0].Reply.Error(), "5.4.6", rcpt)
		assert.Contains(t, res[0].Reply.Error(), "loops back to myself", rcpt)
	}
	assert.Empty(t, sk.messages())

	// The configuration may name a store on this host, on a port the
	// server does not listen on; not one the server listens on.
	mt := mustTable(t, "store.example esmtp:"+hostPort(sk.addr)+"\nself.example esmtp:[127.0.0.1]:2525\nany.example esmtp:[192.0.2.80]:2525\n")
	r = newTestRouter(t, d, RouterConfig{Mailertable: mt, LocalAddrs: []string{"192.0.2.80"},
		ListenAddrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:2525"), netip.MustParseAddrPort("0.0.0.0:2525")}})
	tr = newTestTransport(t, r, TransportConfig{})
	res := tr.Deliver(bg, delivery("a@sender.test", "b@store.example"))
	assert.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	for _, rcpt := range []string{"b@self.example", "b@any.example"} {
		res = tr.Deliver(bg, delivery("a@sender.test", rcpt))
		assert.Equal(t, 554, res[0].Reply.Code, "%s: %s", rcpt, res[0].Reply.Error())
		assert.Contains(t, res[0].Reply.Error(), "loops back to myself", rcpt)
	}
}

func TestDeliverFirstMXDown(t *testing.T) {
	d, port, sinks := mxSetup(t, "127.0.0.3")
	r := newTestRouter(t, d, RouterConfig{Port: uint16(port), Network: "ip4"})
	tr := newTestTransport(t, r, TransportConfig{Dialer: testNetDialer})
	assert.Equal(t, "mx:example.net", tr.Destination("b@Example.Net"))
	res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.Equal(t, "mx2.example.net", res[0].RemoteMTA)
	assert.Len(t, sinks["127.0.0.3"].messages(), 1)
}

func TestDeliverAllHostsDownFallback(t *testing.T) {
	d, port, _ := mxSetup(t)
	fb := startSink(t, "127.0.0.5:0", sinkConfig{})
	r := newTestRouter(t, d, RouterConfig{Port: uint16(port), Network: "ip4", FallbackRelays: []string{hostPort(fb.addr)}})
	tr := newTestTransport(t, r, TransportConfig{Dialer: testNetDialer})
	res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.Equal(t, "127.0.0.5", res[0].RemoteMTA)
	require.Len(t, fb.messages(), 1)

	// DNS failing temporarily also sends mail to the fallback relay.
	d.Set("dnsfail.example", dns.TypeMX, dnstest.Reply{Rcode: dns.RcodeServerFailure})
	res = tr.Deliver(bg, delivery("a@sender.test", "b@dnsfail.example"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.Len(t, fb.messages(), 2)

	// The fallback relay down too: both failures are reported.
	r = newTestRouter(t, d, RouterConfig{Port: uint16(port), Network: "ip4", FallbackRelays: []string{"[127.0.0.4]:" + strconv.Itoa(port)}})
	res = newTestTransport(t, r, TransportConfig{Dialer: testNetDialer}).Deliver(bg, delivery("a@sender.test", "b@example.net"))
	assert.Equal(t, "451 4.4.1 connect to mx2.example.net[192.0.2.3]:"+strconv.Itoa(port)+": Connection refused; fallback relay: connect to [127.0.0.4]:"+
		strconv.Itoa(port)+": Connection refused", res[0].Reply.Error())

	// Never for a domain we are MX for, nor for a permanent failure.
	r = newTestRouter(t, d, RouterConfig{Port: uint16(port), Network: "ip4", FallbackRelays: []string{hostPort(fb.addr)},
		RelayDomains: []string{"example.net"}})
	tr = newTestTransport(t, r, TransportConfig{Dialer: testNetDialer})
	res = tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	assert.Equal(t, "451 4.4.1 connect to mx2.example.net[192.0.2.3]:"+strconv.Itoa(port)+": Connection refused", res[0].Reply.Error())
	assert.Empty(t, res[0].RemoteMTA)
	res = tr.Deliver(bg, delivery("a@sender.test", "b@nxdomain.example"))
	assert.Equal(t, 550, res[0].Reply.Code)
	assert.Len(t, fb.messages(), 2)
}

func TestDeliverSessionLimit(t *testing.T) {
	// Three hosts greet fine but drop the connection at MAIL: with
	// MaxSessions 2 the third is not tried.
	var addrs []string
	var third *atomic.Int64
	for range 3 {
		a, n := rawServer(t, "127.0.0.1:0", scriptedSMTP("MAIL", func(c net.Conn) {}))
		addrs = append(addrs, hostPort(a))
		third = n
	}
	tr := mtTransport(t, "example.net esmtp:"+strings.Join(addrs, ":")+"\n", TransportConfig{MaxSessions: 2})
	res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	assert.Equal(t, 451, res[0].Reply.Code)
	assert.Equal(t, "lost connection with "+addrs[1]+" while sending MAIL FROM", res[0].Reply.Text())
	assert.EqualValues(t, 0, third.Load(), "the third host is not tried")
}

// A peer that stops answering ends the attempt at the timeout of the
// step it stopped in, Postfix's defaults here.
func TestDeliverHangingPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// It never greets: CommandTimeout.
		l := testutil.NewPipeListener("127.0.0.1:25")
		serveRaw(t, l, func(c net.Conn) { io.Copy(io.Discard, c) })
		tr := mtTransport(t, "example.net esmtp:[127.0.0.1]:25\n", TransportConfig{CommandTimeout: DefaultCommandTimeout, Dialer: l.DialContext})
		start := time.Now()
		res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
		assert.Equal(t, "451 4.4.2 conversation with [127.0.0.1]:25 timed out while receiving the initial server greeting", res[0].Reply.Error())
		assert.Equal(t, DefaultCommandTimeout, time.Since(start))

		// It hangs after the message: DataTimeout.
		s := startPipeSink(t, sinkConfig{block: make(chan struct{})})
		tr = mtTransport(t, "example.net esmtp:[127.0.0.1]:25\n", TransportConfig{DataTimeout: DefaultDataTimeout, Dialer: s.dial})
		start = time.Now()
		res = tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
		assert.Equal(t, 451, res[0].Reply.Code)
		assert.Contains(t, res[0].Reply.Text(), "timed out while sending end of data -- message may be sent more than once")
		assert.Equal(t, DefaultDataTimeout, time.Since(start))
	})
}

func TestDeliverCancelled(t *testing.T) {
	accepted := make(chan struct{}, 1)
	addr, _ := rawServer(t, "127.0.0.1:0", func(c net.Conn) {
		accepted <- struct{}{}
		io.Copy(io.Discard, c)
	})
	tr := mtTransport(t, "example.net esmtp:"+hostPort(addr)+"\n", TransportConfig{CommandTimeout: time.Hour})
	ctx, cancel := context.WithCancel(bg)
	go func() {
		<-accepted
		cancel()
	}()
	res := tr.Deliver(ctx, delivery("a@sender.test", "b@example.net"))
	assert.Equal(t, 451, res[0].Reply.Code)
	// Cancelled while connecting or while waiting for the greeting.
	assert.Contains(t, res[0].Reply.Text(), "delivery to "+hostPort(addr)+" interrupted while")
}

func TestDeliverGarbageAndLostConnection(t *testing.T) {
	tests := []struct {
		name string
		bad  func(c net.Conn)
		want string
	}{
		{"garbage", func(c net.Conn) { io.WriteString(c, "garbage here\r\n") }, "451 4.5.0 protocol error with %s while sending RCPT TO"},
		{"bad code", func(c net.Conn) { io.WriteString(c, "999 what\r\n") }, "451 4.5.0 protocol error with %s while sending RCPT TO"},
		{"close mid-reply", func(c net.Conn) { io.WriteString(c, "250-first line\r\n") }, "451 4.4.2 lost connection with %s while sending RCPT TO"},
		{"close", func(c net.Conn) {}, "451 4.4.2 lost connection with %s while sending RCPT TO"},
		{"long line", func(c net.Conn) { io.WriteString(c, "250 "+strings.Repeat("x", 5000)+"\r\n") }, "451 4.5.0 protocol error with %s while sending RCPT TO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := rawServer(t, "127.0.0.1:0", scriptedSMTP("RCPT", tt.bad))
			tr := mtTransport(t, "example.net esmtp:"+hostPort(addr)+"\n", TransportConfig{})
			res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
			want := strings.Replace(tt.want, "%s", hostPort(addr), 1)
			assert.True(t, strings.HasPrefix(res[0].Reply.Error(), want), "%s\nwant prefix %s", res[0].Reply.Error(), want)
			assert.Empty(t, res[0].RemoteMTA)
		})
	}

	// Lost before DATA: nothing was delivered, so the next host gets it.
	addr, _ := rawServer(t, "127.0.0.1:0", scriptedSMTP("RCPT", func(net.Conn) {}))
	s := startSink(t, "127.0.0.1:0", sinkConfig{})
	tr := mtTransport(t, "example.net esmtp:"+hostPort(addr)+":"+hostPort(s.addr)+"\n", TransportConfig{})
	res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.Len(t, s.messages(), 1)
}

func TestDeliverRefusedGreeting(t *testing.T) {
	addr, _ := rawServer(t, "127.0.0.1:0", func(c net.Conn) { io.WriteString(c, "554 5.3.2 go away\r\n"); readLine(c) })
	s := startSink(t, "127.0.0.1:0", sinkConfig{})
	tr := mtTransport(t, "one.example esmtp:"+hostPort(addr)+"\ntwo.example esmtp:"+hostPort(addr)+":"+hostPort(s.addr)+"\n", TransportConfig{})
	res := tr.Deliver(bg, delivery("a@sender.test", "b@one.example"))
	assert.Equal(t, 451, res[0].Reply.Code)
	assert.Contains(t, res[0].Reply.Text(), "refused to talk to me: 554 5.3.2 go away")
	assert.Equal(t, "127.0.0.1", res[0].RemoteMTA)
	res = tr.Deliver(bg, delivery("a@sender.test", "b@two.example"))
	assert.Equal(t, 250, res[0].Reply.Code)
}

func TestDeliverServerClosing421(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sinkConfig{rcpt: func(to string) error {
		if strings.HasPrefix(to, "stop") {
			return smtpErr(421, [3]int{4, 3, 2}, "shutting down")
		}
		return nil
	}})
	tr := mtTransport(t, "example.net esmtp:"+hostPort(s.addr)+"\n", TransportConfig{})
	res := tr.Deliver(bg, delivery("a@sender.test", "a@example.net", "stop@example.net", "c@example.net"))
	assert.Equal(t, []string{"421 4.3.2 shutting down", "421 4.3.2 shutting down", "421 4.3.2 shutting down"}, replies(res))
	assert.Empty(t, s.messages())
	assert.Zero(t, tr.IdleConns(), "a closing session is not cached")
}

func TestConnectionReuse(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sinkConfig{})
	table := "example.net esmtp:" + hostPort(s.addr) + "\n"
	tr := mtTransport(t, table, TransportConfig{IdleTimeout: time.Minute})
	for i := range 3 {
		res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
		require.Equal(t, 250, res[0].Reply.Code, "delivery %d: %s", i, res[0].Reply.Error())
	}
	assert.EqualValues(t, 1, s.accepts(), "three messages, one connection")
	assert.Zero(t, s.ln.count("RSET"), "reused at once after a whole transaction: no RSET")
	assert.Equal(t, 1, tr.IdleConns())
	assert.Len(t, s.messages(), 3)

	// The server dropped the cached connection: a new one is made.
	s.ln.cut()
	res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.EqualValues(t, 2, s.accepts())

	require.NoError(t, tr.Close())
	assert.Zero(t, tr.IdleConns())
	assert.Equal(t, 1, s.ln.count("QUIT"))
	res = tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	assert.Equal(t, 451, res[0].Reply.Code)

	// No cache, or one message per connection: a connection each.
	for _, cfg := range []TransportConfig{{DisableConnCache: true}, {MaxMessagesPerConn: 1}} {
		s := startSink(t, "127.0.0.1:0", sinkConfig{})
		tr := mtTransport(t, "example.net esmtp:"+hostPort(s.addr)+"\n", cfg)
		for range 2 {
			res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
			require.Equal(t, 250, res[0].Reply.Code)
		}
		assert.EqualValues(t, 2, s.accepts())
		assert.Zero(t, tr.IdleConns())
		assert.Equal(t, 2, s.ln.count("QUIT"))
	}
}

// An idle connection is kept for IdleTimeout, then closed with QUIT.
func TestIdleConnectionClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startPipeSink(t, sinkConfig{})
		const idle = 5 * time.Second
		tr := mtTransport(t, "example.net esmtp:[127.0.0.1]:25\n", TransportConfig{IdleTimeout: idle, Dialer: s.dial})
		res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
		require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
		time.Sleep(idle - time.Millisecond)
		synctest.Wait()
		assert.Equal(t, 1, tr.IdleConns(), "kept until IdleTimeout")
		res = tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
		require.Equal(t, 250, res[0].Reply.Code)
		assert.EqualValues(t, 1, s.accepts(), "and used again")

		time.Sleep(idle - time.Millisecond)
		synctest.Wait()
		assert.Equal(t, 1, tr.IdleConns(), "IdleTimeout counts from the last use")
		time.Sleep(time.Millisecond)
		synctest.Wait()
		assert.Zero(t, tr.IdleConns())
		assert.Equal(t, 1, s.ln.count("QUIT"), "closed politely")
	})
}

func TestLMTP(t *testing.T) {
	cfg := sinkConfig{isLMTP: true,
		rcpt: func(to string) error {
			if strings.HasPrefix(to, "nobody@") {
				return smtpErr(550, [3]int{5, 1, 1}, "No such user")
			}
			return nil
		},
		lmtp: func(to string) error {
			if strings.HasPrefix(to, "full@") {
				return smtpErr(452, [3]int{4, 2, 2}, "Mailbox full")
			}
			return nil
		},
	}
	tcp := startSink(t, "127.0.0.1:0", cfg)
	sock := filepath.Join(t.TempDir(), "lmtp.sock")
	unix := startSink(t, sock, cfg)
	table := "store.example lmtp:" + hostPort(tcp.addr) + "\nsock.example lmtp:" + sock + "\n"
	tr := mtTransport(t, table, TransportConfig{})
	assert.Equal(t, "lmtp:"+sock, tr.Destination("a@sock.example"))
	for _, dom := range []string{"store.example", "sock.example"} {
		t.Run(dom, func(t *testing.T) {
			res := tr.Deliver(bg, delivery("a@sender.test", "ok@"+dom, "full@"+dom, "nobody@"+dom, "ok2@"+dom))
			assert.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
			assert.Equal(t, "452 4.2.2 <full@"+dom+"> Mailbox full", res[1].Reply.Error())
			assert.Equal(t, "550 5.1.1 No such user", res[2].Reply.Error())
			assert.Equal(t, 250, res[3].Reply.Code)
			for _, r := range res {
				assert.False(t, r.Relayed, "LMTP is final delivery")
			}
		})
	}
	assert.Len(t, tcp.messages(), 1)
	assert.Len(t, unix.messages(), 1)
	assert.Contains(t, tcp.ln.commands(), "LHLO relay.test")
}

func TestLocalMaildir(t *testing.T) {
	root := t.TempDir()
	now := time.Date(2026, 11, 25, 9, 0, 0, 123456000, time.UTC)
	tr := mtTransport(t, "local.example local:\nbox.example local:catchall\n", TransportConfig{MaildirRoot: root, Now: func() time.Time { return now }})
	res := tr.Deliver(bg, delivery("a@sender.test", "Bob@Local.Example", "x@box.example", "y@box.example"))
	for _, r := range res {
		require.Equal(t, "250 2.0.0 delivered to maildir", r.Reply.Error())
		assert.Empty(t, r.RemoteMTA)
	}
	files, err := filepath.Glob(filepath.Join(root, "local.example", "bob", "new", "*"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	b, err := os.ReadFile(files[0])
	require.NoError(t, err)
	want := "Return-Path: <a@sender.test>\nDelivered-To: Bob@Local.Example\n" + strings.ReplaceAll(testMessage, "\r\n", "\n")
	assert.Equal(t, want, string(b))
	base := filepath.Base(files[0])
	assert.True(t, strings.HasPrefix(base, "1795597200.M123456P"), base)
	assert.True(t, strings.HasSuffix(base, ".relay.test,S="+strconv.Itoa(len(want))), base)
	tmp, _ := os.ReadDir(filepath.Join(root, "local.example", "bob", "tmp"))
	assert.Empty(t, tmp)
	for _, sub := range []string{"cur", "new", "tmp"} {
		fi, err := os.Stat(filepath.Join(root, "local.example", "bob", sub))
		require.NoError(t, err)
		assert.True(t, fi.IsDir())
	}
	box, _ := filepath.Glob(filepath.Join(root, "catchall", "new", "*"))
	assert.Len(t, box, 2, "unique names in one folder")

	// A message delivered here before is a loop.
	d := delivery("a@sender.test", "bob@local.example")
	msg := "Delivered-To: bob@local.example\r\n" + testMessage
	d.Message, d.Size = strings.NewReader(msg), int64(len(msg))
	res = tr.Deliver(bg, d)
	assert.Equal(t, "554 5.4.6 mail forwarding loop for bob@local.example", res[0].Reply.Error())

	res = tr.Deliver(bg, delivery("a@sender.test", ".hidden@local.example"))
	assert.Equal(t, 550, res[0].Reply.Code)

	noRoot := mtTransport(t, "local.example local:\n", TransportConfig{})
	res = noRoot.Deliver(bg, delivery("a@sender.test", "bob@local.example"))
	assert.Equal(t, "451 4.3.5 local delivery is not configured (no Maildir root)", res[0].Reply.Error())
}

func TestErrorMailerAndBadInput(t *testing.T) {
	tr := mtTransport(t, "old.example error:5.1.6:550 This domain has moved\nbusy.example error:4.3.2:451 Try later\n", TransportConfig{})
	assert.Equal(t, "error:5.1.6:550 This domain has moved", tr.Destination("x@old.example"))
	res := tr.Deliver(bg, delivery("a@sender.test", "x@old.example", "y@old.example", "z@busy.example", "nodomain"))
	assert.Equal(t, []string{
		"550 5.1.6 This domain has moved", "550 5.1.6 This domain has moved", "451 4.3.2 Try later",
		"550 5.1.3 bad recipient address syntax: nodomain",
	}, replies(res))
	res[0].Reply.Lines[0] = "changed"
	assert.Equal(t, "This domain has moved", res[1].Reply.Text(), "results do not share slices")
	assert.Equal(t, "invalid:nodomain", tr.Destination("nodomain"))

	d := delivery("a@sender.test", "b@example.net")
	d.Envelope.Body = "BINARYMIME"
	tr2 := newTestTransport(t, newTestRouter(t, nil, RouterConfig{}), TransportConfig{})
	res = tr2.Deliver(bg, d)
	assert.Equal(t, "5.6.3", res[0].Reply.Enhanced.String())
	res = tr2.Deliver(bg, delivery("bad\r\nsender@x", "b@example.net"))
	assert.Equal(t, "5.1.7", res[0].Reply.Enhanced.String())
}

func TestDeliverRegroupsAfterReload(t *testing.T) {
	a := startSink(t, "127.0.0.1:0", sinkConfig{})
	b := startSink(t, "127.0.0.1:0", sinkConfig{})
	tr := mtTransport(t, "a.example esmtp:"+hostPort(a.addr)+"\nb.example esmtp:"+hostPort(b.addr)+"\n", TransportConfig{})
	// The queue grouped them under one destination; they now differ.
	res := tr.Deliver(bg, delivery("a@sender.test", "x@a.example", "y@b.example", "z@a.example"))
	for _, r := range res {
		require.Equal(t, 250, r.Reply.Code)
	}
	require.Len(t, a.messages(), 1)
	assert.Equal(t, []string{"x@a.example", "z@a.example"}, a.messages()[0].To)
	assert.Equal(t, []string{"y@b.example"}, b.messages()[0].To)
}

func TestRewriteUser(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sinkConfig{})
	_, port, _ := net.SplitHostPort(s.addr)
	tr := mtTransport(t, "down.example smtp:postmaster@[127.0.0.1]:"+port+"\n", TransportConfig{})
	res := tr.Deliver(bg, delivery("a@sender.test", "x@down.example", "y@down.example"))
	assert.Equal(t, 250, res[0].Reply.Code)
	assert.Equal(t, 250, res[1].Reply.Code)
	assert.Equal(t, []string{"postmaster@[127.0.0.1]"}, s.messages()[0].To)
}

func TestTransportConfig(t *testing.T) {
	r := newTestRouter(t, nil, RouterConfig{})
	for name, cfg := range map[string]TransportConfig{
		"router":   {},
		"tls":      {Router: r, TLS: 9},
		"timeout":  {Router: r, CommandTimeout: -1},
		"limit":    {Router: r, MaxSessions: -1},
		"hostname": {Router: r, Hostname: "bad name"},
	} {
		_, err := NewTransport(cfg)
		assert.ErrorIs(t, err, ErrConfig, name)
	}
	tr, err := NewTransport(TransportConfig{Router: r})
	require.NoError(t, err)
	assert.NotEmpty(t, tr.hostname)
	assert.Same(t, r, tr.Router())
	assert.Equal(t, "may", TLSMay.String())
	assert.Equal(t, "smtp", KindSMTP.String())
	assert.Equal(t, "mx", FromMX.String())
	_ = postern.Reply{}
}

// TestMaildirExistingOnly: the Maildir's own knowledge of its users, at
// delivery and at RCPT.
func TestMaildirExistingOnly(t *testing.T) {
	root := t.TempDir()
	for _, sub := range []string{"new", "cur", "tmp"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, "local.example", "bob", sub), 0o700))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(root, "local.example", "halfmade"), 0o700))
	tr := mtTransport(t, "local.example local:\nbox.example local:catchall\nremote.example error:4.4.1:451 not here\n",
		TransportConfig{MaildirRoot: root, MaildirExistingOnly: true})
	res := tr.Deliver(bg, delivery("a@sender.test", "Bob@Local.Example", "eve@local.example", "halfmade@local.example",
		"PostMaster@local.example", "x@box.example"))
	assert.Equal(t, []string{
		"250 2.0.0 delivered to maildir",
		"550 5.1.1 <eve@local.example>: Recipient address rejected: User unknown in local mailbox table",
		"550 5.1.1 <halfmade@local.example>: Recipient address rejected: User unknown in local mailbox table",
		"250 2.0.0 delivered to maildir", // postmaster always exists
		"250 2.0.0 delivered to maildir", // local:catchall names its folder
	}, replies(res))
	_, err := os.Stat(filepath.Join(root, "local.example", "eve"))
	assert.True(t, os.IsNotExist(err), "no folder made for an unknown user")

	v, err := NewVerifier(VerifierConfig{Transport: tr, Mailboxes: true})
	require.NoError(t, err)
	for addr, want := range map[string]Status{
		"bob@local.example":        StatusValid,
		"eve@local.example":        StatusInvalid,
		"postmaster@local.example": StatusValid,
		"any@box.example":          StatusValid,
		"a@remote.example":         StatusUnknown, // not a Maildir route: somebody else decides
		"../x@local.example":       StatusInvalid,
	} {
		r, err := v.Verify(bg, addr)
		require.NoError(t, err)
		assert.Equal(t, want, r.Status, addr)
		if want == StatusInvalid {
			assert.Equal(t, 550, r.Reply.Code, addr)
		}
	}

	// Without MaildirExistingOnly every address has a mailbox to be.
	tr = mtTransport(t, "local.example local:\n", TransportConfig{MaildirRoot: root})
	v, err = NewVerifier(VerifierConfig{Transport: tr, Mailboxes: true})
	require.NoError(t, err)
	r, _ := v.Verify(bg, "eve@local.example")
	assert.Equal(t, StatusValid, r.Status)
	_, err = NewVerifier(VerifierConfig{Mailboxes: true})
	assert.ErrorIs(t, err, ErrConfig)
}

// A cached connection is proved with RSET (RFC 5321 §4.1.1.5) unless it
// comes back to work at once after a whole transaction and the server has
// not closed it: after a transaction that ended before DATA, after a
// longer wait, and after the server said 421 and closed, RSET (or a new
// connection) comes first.
func TestReuseWithoutRSET(t *testing.T) {
	var mu sync.Mutex
	clock := time.Unix(1_700_000_000, 0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	wait := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	s := startSink(t, "127.0.0.1:0", sinkConfig{rcpt: func(to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}})
	tr := mtTransport(t, "example.net esmtp:"+hostPort(s.addr)+"\n", TransportConfig{IdleTimeout: time.Minute, Now: now})
	deliver := func(to string, code int) {
		t.Helper()
		res := tr.Deliver(bg, delivery("a@sender.test", to))
		require.Equal(t, code, res[0].Reply.Code, res[0].Reply.Error())
	}
	deliver("b@example.net", 250)
	deliver("b@example.net", 250)
	assert.Zero(t, s.ln.count("RSET"))

	deliver("nobody@example.net", 550) // ends after RCPT: the server holds MAIL's state
	deliver("b@example.net", 250)
	assert.Equal(t, 1, s.ln.count("RSET"), "a transaction left open is reset")

	wait(quickReuse + time.Second)
	deliver("b@example.net", 250)
	assert.Equal(t, 2, s.ln.count("RSET"), "a connection idle for longer is proved first")
	assert.EqualValues(t, 1, s.accepts(), "all on one connection")

	// The server closes the idle connection (its timeout, a 421): the
	// peek sees it and a new connection carries the message.
	s.ln.cut()
	deliver("b@example.net", 250)
	assert.EqualValues(t, 2, s.accepts())
	assert.Len(t, s.messages(), 5)
}
