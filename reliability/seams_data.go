package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

func addressCases() []seamDef {
	const g = "Addresses"
	return []seamDef{
		{"5a", g, `access "To:ceo@example.test REJECT"; RCPT TO:<"ceo"@example.test>, <"c\eo"@example.test>, <CEO@EXAMPLE.TEST.>, <"CEO"@Example.Test>`,
			"550 for each spelling; nothing delivered", quotedRefused, nil},
		{"5b", g, `same access file; RCPT TO:<"ceo(x)"@example.test> (a comment in the quoted local part)`,
			`250; the next hop's RCPT is exactly <"ceo(x)"@example.test>`, quotedDelivered(`"ceo(x)"@example.test`), nil},
		{"5c", g, `same access file; RCPT TO:<"a b"@example.test>`,
			`250; delivered as <"a b"@example.test>`, quotedDelivered(`"a b"@example.test`), nil},
		{"5d", g, `MAIL FROM:<"a b"@sender.example> (a trusted client), RCPT TO:<"x"@gone.example>, which the next hop refuses (550 5.1.1)`,
			`250; one notice, to <"a b"@sender.example> in wire form (envelope and To: header)`, quotedSenderNotice, nil},
		{"6", g, "control characters in an address: MAIL FROM:<\"ev\\x1b[2J\"@example.net>",
			"553; nothing queued", controlInAddress, nil},
	}
}

// quotedRelay runs the relay of the quoted-address cases: example.test
// (access "To:ceo@example.test REJECT") to a recording store,
// sender.example to a sink for notices, gone.example to a sink that
// refuses every recipient; only 127.0.0.1 is trusted.
type quotedRelay struct {
	r                    *relayProc
	store, senders, gone *sink
}

func (e *seams) quotedRelay(ctx context.Context) (*quotedRelay, error) {
	q := &quotedRelay{}
	var err error
	for _, k := range []**sink{&q.store, &q.senders, &q.gone} {
		if *k, err = e.s.startRecordingSink(); err != nil {
			return nil, err
		}
	}
	q.gone.refuseRcpt(func(string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	})
	dir, err := e.s.dir("seams-" + e.c.ID)
	if err != nil {
		return nil, err
	}
	mt, err := mailertable(dir, map[string]string{"example.test": q.store.addr, "sender.example": q.senders.addr, "gone.example": q.gone.addr})
	if err != nil {
		return nil, err
	}
	acc, err := writeFile(dir, "access", "To:ceo@example.test REJECT\n")
	if err != nil {
		return nil, err
	}
	q.r, err = e.startRelayIn(ctx, dir, "-domains", "example.test,gone.example", "-mailertable", mt, "-access", acc,
		"-trusted", "127.0.0.1", "-hostname", "relay.seams.test")
	return q, err
}

func quotedRefused(ctx context.Context, e *seams, c *SeamCase) error {
	q, err := e.quotedRelay(ctx)
	if err != nil {
		return err
	}
	if err := e.rejectedAll(ctx, c, q.r, "127.0.0.2", `"a b"@sender.example`,
		[]string{`"ceo"@example.test`, `"c\eo"@example.test`, "CEO@EXAMPLE.TEST.", `"CEO"@Example.Test`}, "550 "); err != nil {
		return err
	}
	settleSink(ctx, q.store, 0, 0, time.Second)
	c.Delivered = envelopes(deliveries(q.store))
	c.require(len(deliveries(q.store)) == 0, "delivered %s", c.Delivered)
	return nil
}

// quotedDelivered sends to rcpt (a quoted local part) from an untrusted
// client and wants the next hop's RCPT argument to be exactly <rcpt>.
func quotedDelivered(rcpt string) func(ctx context.Context, e *seams, c *SeamCase) error {
	return func(ctx context.Context, e *seams, c *SeamCase) error {
		q, err := e.quotedRelay(ctx)
		if err != nil {
			return err
		}
		got, err := e.sendRaw(ctx, "127.0.0.2", q.r.addr, `"a b"@sender.example`, []string{rcpt}, "Subject: quoted\r\n\r\nhello\r\n.\r\n")
		if err != nil {
			return err
		}
		c.Reply = summary(got[1 : len(got)-1])
		if c.expectCodes(got, "250 250 250 354 250 221") && !strings.Contains(got[2], "<"+rcpt+">") {
			// Not the mailbox's spelling on the wire: harmless to the
			// mail, which goes by the envelope, but another address.
			c.note("the 250 to RCPT names the canonical form, not the wire form <%s>: %q", rcpt, got[2])
		}
		settleSink(ctx, q.store, 1, 20*time.Second, time.Second)
		d := deliveries(q.store)
		c.Delivered = envelopes(d)
		if c.require(len(d) == 1, "%d deliveries, want 1", len(d)) {
			c.require(len(d[0].Rcpts) == 1 && wirePath(d[0].Rcpts[0]) == "<"+rcpt+">", "the next hop's RCPT TO:%v, want <%s>", d[0].Rcpts, rcpt)
			c.require(wirePath(d[0].Mail) == `<"a b"@sender.example>`, "the next hop's MAIL FROM:%s", d[0].Mail)
		}
		return nil
	}
}

func quotedSenderNotice(ctx context.Context, e *seams, c *SeamCase) error {
	q, err := e.quotedRelay(ctx)
	if err != nil {
		return err
	}
	got, err := e.sendRaw(ctx, "127.0.0.1", q.r.addr, `"a b"@sender.example`, []string{`"x"@gone.example`}, "Subject: quoted\r\n\r\nhello\r\n.\r\n")
	if err != nil {
		return err
	}
	c.Reply = summary(got[1 : len(got)-1])
	c.expectCodes(got, "250 250 250 354 250 221")
	settleSink(ctx, q.senders, 1, 20*time.Second, 2*time.Second)
	d := deliveries(q.senders)
	c.Delivered = notices(d)
	if c.require(len(d) == 1, "%d messages to sender.example, want one notice", len(d)) {
		c.require(wirePath(d[0].Mail) == "<>", "the notice's MAIL FROM:%s", d[0].Mail)
		c.require(len(d[0].Rcpts) == 1 && wirePath(d[0].Rcpts[0]) == `<"a b"@sender.example>`, "the notice went to %v", d[0].Rcpts)
		c.require(bytes.Contains(d[0].Data, []byte("\r\nTo: <\"a\\ b\"@sender.example>\r\n")) ||
			bytes.Contains(d[0].Data, []byte("\r\nTo: <\"a b\"@sender.example>\r\n")), "the notice's To: header is not the wire form")
		c.require(statusOf(d[0].Data) == "5.1.1", "the notice says Status: %s, want 5.1.1", statusOf(d[0].Data))
	}
	c.require(len(deliveries(q.gone)) == 0, "gone.example took a message")
	return nil
}

func controlInAddress(ctx context.Context, e *seams, c *SeamCase) error {
	r, k, err := e.plainRelay(ctx)
	if err != nil {
		return err
	}
	got, err := e.dialog(ctx, "127.0.0.2", r.addr, "MAIL FROM:<\"ev\x1b[2J\"@example.net>", "MAIL FROM:<\"ev\x07il\"@example.net>",
		"RCPT TO:<b@example.test>")
	if err != nil {
		return err
	}
	c.Reply = strings.Join(got, "; ")
	for _, l := range got[:2] {
		c.require(strings.HasPrefix(l, "553 "), "MAIL with a control character: %s, want 553", l)
	}
	c.require(strings.HasPrefix(got[2], "503") || strings.HasPrefix(got[2], "502") || strings.HasPrefix(got[2], "5"),
		"RCPT after the refused MAIL: %s, want 5xx (no transaction)", got[2])
	c.Delivered = envelopes(deliveries(k))
	c.require(r.accepted() == 0, "queued")
	return nil
}

func dataCases() []seamDef {
	const g = "The DATA stream"
	return []seamDef{
		{"7", g, `DATA, then "line\r\n.\r\r\n.\r\n" and "MAIL FROM:<a@b>" in the same write`,
			"one reply to DATA (250), MAIL answered 250 as a command; the delivered message has CRLF line ends only", dotCRCR, nil},
		{"8", g, `"\r\n.\rX" and a bare CR "\r.\r" in the body`,
			"250; the next hop's DATA bytes have exactly one end-of-data sequence and no bare CR", dotCRX, nil},
		{"9", g, "-bare-newline reject: a body with a bare LF", "550 5.5.2; nothing delivered", bareLFReject, nil},
		{"O4", g, "BDAT with a bare CR chunk that hides a command: \"hello\\r.\\rMAIL FROM:<evil@example.net>\\r\\n\"",
			"one 250 for the chunk; the next hop's bytes have one end of data, no bare CR, no second transaction", bdatBareCR, nil},
	}
}

// checkNextHop checks what a next hop got: n messages, CRLF only, one
// end of data per DATA command.
func checkNextHop(c *SeamCase, k *sink, n int) []wireTxn {
	d := deliveries(k)
	c.require(len(d) == n, "%d deliveries at the next hop, want %d", len(d), n)
	ends, datas, bare := 0, 0, 0
	for _, w := range k.wire() {
		ends += bytes.Count(w, []byte("\r\n.\r\n"))
		datas += bytes.Count(w, []byte("\r\nDATA\r\n"))
		bare += bareLineEnds(w)
	}
	c.require(ends == datas, "%d end-of-data sequences for %d DATA commands on the next hop's wire", ends, datas)
	c.require(bare == 0, "%d bare CR or LF on the next hop's wire", bare)
	for _, m := range k.received() {
		c.require(bareLineEnds(m.Data) == 0, "the delivered message has %d bare CR or LF", bareLineEnds(m.Data))
	}
	return d
}

func dotCRCR(ctx context.Context, e *seams, c *SeamCase) error {
	r, k, err := e.plainRelay(ctx)
	if err != nil {
		return err
	}
	t, _, err := e.dial(ctx, "127.0.0.2", r.addr)
	if err != nil {
		return err
	}
	got, err := t.do("EHLO attacker.example", "MAIL FROM:<alice@example.net>", "RCPT TO:<bob@example.test>", "DATA")
	if err != nil {
		return err
	}
	if !c.expectCodes(got, "250 250 250 354") {
		return nil
	}
	if err := t.send("Subject: seven\r\n\r\nline\r\n.\r\r\n.\r\nMAIL FROM:<a@b>\r\n"); err != nil {
		return err
	}
	after, err := t.replies(2)
	if err != nil {
		return err
	}
	after = append(after, t.quit()...)
	c.Reply = strings.Join(after, "; ")
	c.expectCodes(after, "250 250 221")
	settleSink(ctx, k, 1, 20*time.Second, time.Second)
	d := checkNextHop(c, k, 1)
	c.Delivered = envelopes(d)
	for _, m := range k.received() {
		c.require(!bytes.Contains(m.Data, []byte("MAIL FROM")), "the command after the end is in the message")
		c.Delivered += fmt.Sprintf("; text ends %q", m.Data[max(0, len(m.Data)-14):])
	}
	return nil
}

func dotCRX(ctx context.Context, e *seams, c *SeamCase) error {
	r, k, err := e.plainRelay(ctx)
	if err != nil {
		return err
	}
	got, err := e.sendRaw(ctx, "127.0.0.2", r.addr, "alice@example.net", []string{"bob@example.test"},
		"Subject: eight\r\n\r\nline\r\n.\rX\r\nhello\r.\rworld\r\n.\r\n")
	if err != nil {
		return err
	}
	c.Reply = strings.Join(got[len(got)-2:], "; ")
	c.expectCodes(got, "250 250 250 354 250 221")
	settleSink(ctx, k, 1, 20*time.Second, time.Second)
	d := checkNextHop(c, k, 1)
	c.Delivered = envelopes(d)
	for _, t := range d {
		c.Delivered += fmt.Sprintf("; DATA bytes end %q", t.Data[max(0, len(t.Data)-30):])
	}
	return nil
}

func bareLFReject(ctx context.Context, e *seams, c *SeamCase) error {
	r, k, err := e.plainRelay(ctx, "-bare-newline", "reject")
	if err != nil {
		return err
	}
	got, err := e.sendRaw(ctx, "127.0.0.2", r.addr, "alice@example.net", []string{"bob@example.test"},
		"Subject: nine\r\n\r\nhello\nworld\r\n.\r\n")
	if err != nil {
		return err
	}
	c.Reply = strings.Join(got[len(got)-2:], "; ")
	c.require(len(got) == 6 && strings.HasPrefix(got[4], "550 5.5.2 "), "replies %q, want 550 5.5.2 at the end of data", got)
	settleSink(ctx, k, 0, 0, time.Second)
	c.Delivered = envelopes(deliveries(k))
	c.require(len(deliveries(k)) == 0, "delivered: %s", c.Delivered)
	c.require(r.accepted() == 0, "queued")
	return nil
}

func bdatBareCR(ctx context.Context, e *seams, c *SeamCase) error {
	r, k, err := e.plainRelay(ctx)
	if err != nil {
		return err
	}
	t, _, err := e.dial(ctx, "127.0.0.2", r.addr)
	if err != nil {
		return err
	}
	chunk := "Subject: bdat\r\n\r\nhello\r.\rMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.test>\r\nend\r\n"
	if err := t.send(fmt.Sprintf("EHLO attacker.example\r\nMAIL FROM:<alice@example.net>\r\nRCPT TO:<bob@example.test>\r\nBDAT %d LAST\r\n%s",
		len(chunk), chunk)); err != nil {
		return err
	}
	got, err := t.replies(4)
	if err != nil {
		return err
	}
	got = append(got, t.quit()...)
	c.Reply = strings.Join(got[3:], "; ")
	c.expectCodes(got, "250 250 250 250 221")
	settleSink(ctx, k, 1, 20*time.Second, time.Second)
	d := checkNextHop(c, k, 1)
	c.Delivered = envelopes(d)
	for _, t := range d {
		c.require(len(t.Rcpts) == 1 && wirePath(t.Rcpts[0]) == "<bob@example.test>", "recipients %v", t.Rcpts)
	}
	return nil
}
