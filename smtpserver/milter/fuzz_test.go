package milter

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// fuzzPolicy has a filter at every stage, so each event goes through
// the chain, edits and all.
func fuzzPolicy(t testing.TB) postern.Filter {
	ch, err := postern.NewChain(postern.ChainConfig{Entries: []postern.Entry{
		{Filter: postern.HeloFunc("helo", func(context.Context, *postern.Conn) (postern.Verdict, error) { return postern.Pass, nil })},
		{Filter: postern.RcptFunc("rcpt", func(_ context.Context, _ *postern.Conn, _ *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
			if strings.HasPrefix(r.Addr, "no") {
				return postern.Rejected(550, postern.ESC(5, 1, 1), "User unknown", ""), nil
			}
			return postern.Pass, nil
		})},
		{Filter: postern.DataFunc("data", func(_ context.Context, _ *postern.Conn, tx *postern.Txn, m *postern.Message) (postern.Verdict, error) {
			m.AddHeader("X-Seen", tx.From)
			m.DeleteHeader("Subject", 0)
			if m.Size()%7 == 0 {
				return postern.Quarantined("sevens"), nil
			}
			return postern.Pass, nil
		})},
	}})
	require.NoError(t, err)
	return ch
}

// FuzzServerStream feeds any byte stream to the server as an MTA would
// send it: the packet guard, go-milter's decoder underneath and the
// session behind must answer or close, never panic (a panic in a
// connection's goroutine would end the process) and never hang.
func FuzzServerStream(f *testing.F) {
	f.Add(conversation("hello\r\n"))
	f.Add(conversation(""))
	f.Add(append(optneg(), pkt('C', "h\x00", "6", "\x00\x19", "[IPv6:::1]\x00")...))
	f.Add(append(optneg(), pkt('D', "C", "{client_resolve}\x00FORGED\x00_\x00x [1.2.3.4] (may be forged)\x00")...))
	f.Add(append(append(optneg(), pkt('C', "h\x00", "U")...), pkt('M', "<>\x00", "AUTH=<>\x00", "ENVID=a+2Bb\x00")...))
	f.Add(bytes.Replace(conversation("x"), []byte("<bob@example.test>"), []byte("<no@example.test>"), 1))
	quietGoMilter(f)
	l := newChanListener()
	srv, err := New(Config{Policy: fuzzPolicy(f), MaxPacketBytes: 64 << 10, MaxMessageBytes: 4 << 10, MaxHeaderBytes: 1 << 10,
		IdleTimeout: 2 * time.Second})
	require.NoError(f, err)
	go func() { _ = srv.Serve(l) }()
	f.Cleanup(func() { _ = srv.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		mta, milterEnd := net.Pipe()
		l.ch <- milterEnd
		read := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, mta)
			close(read)
		}()
		_ = mta.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = mta.Write(in)
		// What the server answers to the whole stream is read; then the
		// MTA hangs up.
		time.Sleep(time.Millisecond)
		mta.Close()
		<-read
	})
}

// FuzzGuard checks the guard alone: whatever the stream, each packet it
// lets through is whole, within the limit, non-empty and passes the
// shape check, byte for byte as sent; the first bad one ends the stream.
func FuzzGuard(f *testing.F) {
	f.Add(conversation("body\r\n"))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 'B'})
	f.Add(pkt('C', "x"))
	const max = 1 << 10
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		go func() { _, _ = a.Write(in); a.Close() }()
		g := newGuardConn(b, max, checkFromMTA)
		out, err := io.ReadAll(g)
		b.Close()
		if !bytes.HasPrefix(in, out) {
			t.Fatalf("the guard changed the bytes")
		}
		for rest := out; len(rest) > 0; {
			n := int(binary.BigEndian.Uint32(rest))
			if n < 1 || n > max || 4+n > len(rest) {
				t.Fatalf("packet of %d bytes let through", n)
			}
			if checkFromMTA(rest[4], rest[5:4+n]) != nil {
				t.Fatalf("packet %q let through", rest[:4+n])
			}
			rest = rest[4+n:]
		}
		if len(out) < len(in) && err == nil {
			t.Fatalf("stopped early without an error")
		}
	})
}

// FuzzESMTPParams reads any parameter text without panicking, and what
// Client writes for parameters reads back the same.
func FuzzESMTPParams(f *testing.F) {
	f.Add("SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=a+2Bb AUTH=<a@b.example>", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b")
	f.Add("AUTH=<> REQUIRETLS", "NOTIFY=NEVER")
	f.Add("ENVID=+ AUTH=+zz", "ORCPT=;")
	f.Fuzz(func(t *testing.T, mail, rcpt string) {
		p := mailParams(mail)
		if q := mailParams(mailArgs(p)); !equalParams(p, q) {
			t.Fatalf("mail parameters %+v read back as %+v", p, q)
		}
		var r postern.Rcpt
		rcptParams(&r, rcpt)
		var r2 postern.Rcpt
		rcptParams(&r2, rcptArgs(&r))
		if strings.Join(r.Notify, ",") != strings.Join(r2.Notify, ",") || r.ORcpt != r2.ORcpt || r.ORcptType != r2.ORcptType {
			t.Fatalf("recipient parameters %v %q %q read back as %v %q %q", r.Notify, r.ORcptType, r.ORcpt, r2.Notify, r2.ORcptType, r2.ORcpt)
		}
	})
}

func equalParams(a, b postern.MailParams) bool {
	if (a.Auth == nil) != (b.Auth == nil) || a.Auth != nil && *a.Auth != *b.Auth {
		return false
	}
	a.Auth, b.Auth = nil, nil
	return a == b
}

// FuzzClientReplies plays a milter that answers anything after a valid
// negotiation: the Client must come back with a verdict (the milter's,
// or its failure under OnError), never panic or hang.
func FuzzClientReplies(f *testing.F) {
	f.Add(pkt('c'))
	f.Add(append(pkt('h', "X-A\x00", "b\x00"), pkt('a')...))
	f.Add(pkt('y', "550 5.7.1 no\x00"))
	f.Add(append(pkt('m', "\x00\x00\x00\x01Subject\x00\x00"), pkt('q', "why\x00")...))
	f.Add(append(pkt('p'), pkt('b', "new body")...))
	f.Add([]byte{0, 0, 0, 0})
	quietGoMilter(f)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(f, err)
	f.Cleanup(func() { ln.Close() })
	replies := make(chan []byte, 1)
	go fakeMilter(ln, replies)
	cl, err := NewClient(ClientConfig{Address: ln.Addr().String(), CommandTimeout: time.Second, ContentTimeout: time.Second, ConnectTimeout: time.Second})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, in []byte) {
		replies <- in
		c, tx := envelope()
		tx.Rcpts = []*postern.Rcpt{{Addr: "bob@example.test", Original: "bob@example.test"}}
		v, err := cl.CheckData(context.Background(), c, tx, message(t, sample))
		if err != nil {
			t.Fatalf("error %v: the client answers with a verdict", err)
		}
		_ = v
	})
}

// fakeMilter negotiates (asking for every action) and then, for each
// connection, writes the next reply stream and reads until closed.
func fakeMilter(ln net.Listener, replies <-chan []byte) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		in := <-replies
		go func() {
			var hdr [4]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				c.Close()
				return
			}
			if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[:]))); err != nil {
				c.Close()
				return
			}
			d := make([]byte, 12)
			binary.BigEndian.PutUint32(d, 6)
			binary.BigEndian.PutUint32(d[4:], 0x1ff)
			// No replies wanted before the end of the message: the fuzzed
			// bytes answer it.
			binary.BigEndian.PutUint32(d[8:], 0x000ff000|0x80)
			_, _ = c.Write(pkt('O', string(d)))
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
			_, _ = c.Write(in)
			// Then the milter hangs up: what it wrote is all it says.
			c.(*net.TCPConn).CloseWrite()
		}()
	}
}
