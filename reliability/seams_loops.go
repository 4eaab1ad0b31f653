package main

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"
)

func loopCases() []seamDef {
	const g = "Loops and localhost"
	return []seamDef{
		{"1", g, "untrusted client, migration example: RCPT TO:<user@localhost>, <user@[127.0.0.1]>, <user@sub.nix.co.jj>, then DATA",
			"550 5.7.1 for each; nothing delivered", untrustedLocalhost, nil},
		{"2", g, "trusted client (127.0.0.1), migration example, DNS localhost → 127.0.0.1: a message to user@localhost",
			"250 once; one notice (5.4.6 \"loops back to myself\") to the sender; the log shows it entered once", trustedLocalhost, nil},
		{"3", g, "two relays whose mailertables point at each other (-max-hops 20): a message to user@loop.example",
			"one notice to the sender; ≤ 20 acceptances in all", relaysLoop, nil},
		{"4", g, "a message arriving with 50 Received fields", "554 5.4.6 Too many hops; nothing delivered", manyHops, nil},
		{"B1", g, "open-relay battery (27 attempts: percent hack, bang paths, quoting, source routes, literals, look-alikes, localhost) from the untrusted address, built-in defaults",
			"27 attempts, 0 relayed (5xx at RCPT each); mail for the own domain still taken", battery(false), nil},
		{"B2", g, "open-relay battery, as B1, against the migration example",
			"27 attempts, 0 relayed (5xx at RCPT each); mail for the own domain still taken", battery(true), nil},
		{"O1", g, "untrusted client, migration example: other spellings of this host: <user@LOCALHOST.>, <user@a.localhost>, <user@[IPv6:::1]>, " +
			"<user@[IPv6:::ffff:127.0.0.1]> (IPv4-mapped loopback), <user@[0.0.0.0]>, <user@relay.nix.co.jj> (its own name), <user@[own interface address]>",
			"5xx at RCPT for each; nothing delivered", hostSpellings, nil},
		{"O2", g, "trusted client, migration example: a message to <user@[IPv6:::ffff:127.0.0.1]> (IPv4-mapped loopback literal, valid RFC 5321 §4.1.3 IPv6v4-comp syntax)",
			"never delivered back to the relay: one notice (5.4.6 \"loops back to myself\", as for [127.0.0.1]) to the sender, entered once", mappedLoopback, nil},
		{"O3", g, "trusted client, migration example: a message to user@zero.example, whose MX host has the address 0.0.0.0",
			"accepted once; one notice (5.4.6) to the sender; no delivery attempt to 0.0.0.0", mxZero, nil},
	}
}

// rcptReplies describes the replies to RCPT commands: "<a> 550 5.7.1 ...".
func rcptReplies(rcpts, replies []string) string {
	var parts []string
	for i, r := range replies {
		if i < len(rcpts) {
			parts = append(parts, "<"+rcpts[i]+"> "+r)
		} else {
			parts = append(parts, r)
		}
	}
	return strings.Join(parts, "; ")
}

// enhancedRE matches a reply with an enhanced status code.
var enhancedRE = regexp.MustCompile(`^([245]\d\d) ([245]\.\d{1,3}\.\d{1,3}) `)

// rejectedAll checks that every RCPT of rcpts was refused with want (a
// prefix such as "550 5.7.1" or "5"), a few per session so the error
// limits do not slow the dialog, and that nothing was queued.
func (e *seams) rejectedAll(ctx context.Context, c *SeamCase, r *relayProc, src, from string, rcpts []string, want string) error {
	var replies []string
	last := ""
	for i := 0; i < len(rcpts); i += 4 {
		batch := rcpts[i:min(i+4, len(rcpts))]
		cmds := []string{"MAIL FROM:<" + from + ">"}
		for _, a := range batch {
			cmds = append(cmds, "RCPT TO:<"+a+">")
		}
		cmds = append(cmds, "DATA")
		got, err := e.dialog(ctx, src, r.addr, cmds...)
		if err != nil {
			return err
		}
		c.require(strings.HasPrefix(got[0], "250"), "MAIL FROM:<%s>: %s", from, got[0])
		for j, a := range batch {
			c.require(strings.HasPrefix(got[1+j], want) && enhancedRE.MatchString(got[1+j]), "RCPT TO:<%s>: %s, want %s", a, got[1+j], want)
		}
		last = got[len(got)-1]
		c.require(strings.HasPrefix(last, "5"), "DATA without a recipient: %s, want 5xx", last)
		replies = append(replies, got[1:len(got)-1]...)
	}
	c.Reply = rcptReplies(rcpts, replies) + "; DATA: " + last
	c.require(r.accepted() == 0, "the relay queued %d messages", r.accepted())
	return nil
}

func untrustedLocalhost(ctx context.Context, e *seams, c *SeamCase) error {
	src, err := e.outside()
	if err != nil {
		return err
	}
	r, store, err := e.migration(ctx)
	if err != nil {
		return err
	}
	if err := e.rejectedAll(ctx, c, r, src, "spammer@outside.example",
		[]string{"user@localhost", "user@[127.0.0.1]", "user@sub.nix.co.jj"}, "550 5.7.1 "); err != nil {
		return err
	}
	settleSink(ctx, store, 0, 0, time.Second)
	d := deliveries(store)
	c.Delivered = envelopes(d)
	c.require(len(d) == 0, "delivered %s", c.Delivered)
	return nil
}

// oneNotice sends a message from a trusted client and checks that it was
// accepted once and that its sender got exactly one failure notice with
// status and text. notices arrive at k.
func (e *seams) oneNotice(ctx context.Context, c *SeamCase, r *relayProc, k *sink, from, rcpt, status, text string) error {
	t, _, err := e.dial(ctx, "127.0.0.1", r.addr)
	if err != nil {
		return err
	}
	got, err := t.do("EHLO trusted.example", "MAIL FROM:<"+from+">", "RCPT TO:<"+rcpt+">", "DATA")
	if err != nil {
		return err
	}
	c.Reply = summary(got[1:])
	if !c.expectCodes(got, "250 250 250 354") {
		return nil
	}
	end, err := t.do("Subject: seams\r\nMessage-ID: <seams-" + c.ID + "@client.example>\r\n\r\nhello\r\n.")
	if err != nil {
		return err
	}
	c.Reply = summary(append(got[1:], end[0]))
	c.require(strings.HasPrefix(end[0], "250 "), "end of data: %s, want 250", end[0])
	t.quit()
	settleSink(ctx, k, 1, 30*time.Second, 2*time.Second)
	d := deliveries(k)
	c.Delivered = notices(d)
	c.require(len(d) == 1, "%d messages at the sink, want one notice", len(d))
	if len(d) == 1 {
		n := d[0]
		c.require(wirePath(n.Mail) == "<>", "the notice's MAIL FROM:%s, want <>", n.Mail)
		c.require(len(n.Rcpts) == 1 && wirePath(n.Rcpts[0]) == "<"+from+">", "the notice went to %v, want <%s>", n.Rcpts, from)
		c.require(statusOf(n.Data) == status, "the notice says Status: %s, want %s", statusOf(n.Data), status)
		c.require(strings.Contains(string(n.Data), text), "the notice does not say %q", text)
	}
	c.Delivered += fmt.Sprintf("; entered the relay %d time(s)", r.accepted())
	c.require(r.accepted() == 1, "the relay's log shows the message queued %d times, want 1", r.accepted())
	return nil
}

// expectCodes checks replies against space-separated codes.
func (c *SeamCase) expectCodes(replies []string, want string) bool {
	ok := codes(replies) == want
	c.require(ok, "replies %q, want codes %s", replies, want)
	return ok
}

func trustedLocalhost(ctx context.Context, e *seams, c *SeamCase) error {
	r, store, err := e.migration(ctx)
	if err != nil {
		return err
	}
	return e.oneNotice(ctx, c, r, store, "alice@nix.co.jj", "user@localhost", "5.4.6", "loops back to myself")
}

func mappedLoopback(ctx context.Context, e *seams, c *SeamCase) error {
	r, store, err := e.migration(ctx)
	if err != nil {
		return err
	}
	return e.oneNotice(ctx, c, r, store, "alice@nix.co.jj", "user@[IPv6:::ffff:127.0.0.1]", "5.4.6", "loops back to myself")
}

func mxZero(ctx context.Context, e *seams, c *SeamCase) error {
	r, store, err := e.migration(ctx)
	if err != nil {
		return err
	}
	if err := e.oneNotice(ctx, c, r, store, "alice@nix.co.jj", "user@zero.example", "5.4.6", "loops back to myself"); err != nil {
		return err
	}
	c.require(!strings.Contains(r.logText(), "dial tcp 0.0.0.0"), "the relay tried to connect to 0.0.0.0")
	return nil
}

func relaysLoop(ctx context.Context, e *seams, c *SeamCase) error {
	senders, err := e.s.startRecordingSink()
	if err != nil {
		return err
	}
	aAddr, err := freeAddr()
	if err != nil {
		return err
	}
	bAddr, err := freeAddr()
	if err != nil {
		return err
	}
	start := func(name, self, peer string) (*relayProc, error) {
		dir, err := e.s.dir("seams-3-mt-" + name)
		if err != nil {
			return nil, err
		}
		mt, err := mailertable(dir, map[string]string{"loop.example": peer, "sender.example": senders.addr})
		if err != nil {
			return nil, err
		}
		r, _, err := e.startRelay(ctx, name, "-listen", self, "-mailertable", mt, "-max-hops", "20", "-hostname", name+".seams.test")
		return r, err
	}
	a, err := start("a", aAddr, bAddr)
	if err != nil {
		return err
	}
	b, err := start("b", bAddr, aAddr)
	if err != nil {
		return err
	}
	t, _, err := e.dial(ctx, "127.0.0.1", a.addr)
	if err != nil {
		return err
	}
	got, err := t.do("EHLO trusted.example", "MAIL FROM:<alice@sender.example>", "RCPT TO:<user@loop.example>", "DATA")
	if err != nil {
		return err
	}
	if !c.expectCodes(got, "250 250 250 354") {
		return nil
	}
	end, err := t.do("Subject: round and round\r\n\r\nhello\r\n.")
	if err != nil {
		return err
	}
	t.quit()
	settleSink(ctx, senders, 1, 60*time.Second, 2*time.Second)
	d := deliveries(senders)
	hops := a.accepted() + b.accepted()
	refusal := regexp.MustCompile(`reply="(554 5\.4\.6[^"]*)"`).FindStringSubmatch(a.logText() + b.logText())
	c.Reply = end[0]
	if refusal != nil {
		c.Reply += fmt.Sprintf("; after %d acceptances the next relay: %s", hops, refusal[1])
	}
	c.Delivered = notices(d) + fmt.Sprintf("; %d acceptances in all", hops)
	c.require(strings.HasPrefix(end[0], "250 "), "end of data: %s", end[0])
	c.require(len(d) == 1, "%d messages to the sender's domain, want one notice", len(d))
	if len(d) == 1 {
		c.require(wirePath(d[0].Mail) == "<>" && len(d[0].Rcpts) == 1 && wirePath(d[0].Rcpts[0]) == "<alice@sender.example>",
			"the notice: %s", envelopes(d))
		c.require(statusOf(d[0].Data) == "5.4.6", "the notice says Status: %s, want 5.4.6", statusOf(d[0].Data))
	}
	c.require(hops <= 20, "%d acceptances, want at most 20", hops)
	c.require(hops >= 2, "%d acceptances: the message never went round", hops)
	return nil
}

// plainRelay runs the built-in defaults with example.test routed to a
// recording sink, and more flags.
func (e *seams) plainRelay(ctx context.Context, flags ...string) (*relayProc, *sink, error) {
	k, err := e.s.startRecordingSink()
	if err != nil {
		return nil, nil, err
	}
	dir, err := e.s.dir("seams-" + e.c.ID + "-mt")
	if err != nil {
		return nil, nil, err
	}
	mt, err := mailertable(dir, map[string]string{"example.test": k.addr})
	if err != nil {
		return nil, nil, err
	}
	r, _, err := e.startRelay(ctx, "relay", append([]string{"-mailertable", mt, "-hostname", "relay.seams.test"}, flags...)...)
	return r, k, err
}

// sendRaw sends one transaction from src with body as the bytes after
// DATA (the end of data included) and returns every reply after the
// banner, QUIT's included.
func (e *seams) sendRaw(ctx context.Context, src, addr, from string, rcpts []string, body string) ([]string, error) {
	t, _, err := e.dial(ctx, src, addr)
	if err != nil {
		return nil, err
	}
	cmds := []string{"EHLO attacker.example", "MAIL FROM:<" + from + ">"}
	for _, r := range rcpts {
		cmds = append(cmds, "RCPT TO:<"+r+">")
	}
	got, err := t.do(append(cmds, "DATA")...)
	if err != nil {
		return got, err
	}
	if !strings.HasPrefix(got[len(got)-1], "354") {
		return append(got, t.quit()...), nil
	}
	if err := t.send(body); err != nil {
		return got, err
	}
	end, err := t.replies(1)
	if err != nil {
		return append(got, end...), err
	}
	return append(append(got, end...), t.quit()...), nil
}

func manyHops(ctx context.Context, e *seams, c *SeamCase) error {
	r, k, err := e.plainRelay(ctx)
	if err != nil {
		return err
	}
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, "Received: from hop%d.example by hop%d.example; Mon, 7 Dec 2026 10:00:%02d +0000\r\n", i, i+1, i)
	}
	b.WriteString("Subject: looped\r\n\r\nround\r\n.\r\n")
	got, err := e.sendRaw(ctx, "127.0.0.1", r.addr, "a@example.net", []string{"b@example.test"}, b.String())
	if err != nil {
		return err
	}
	c.Reply = got[len(got)-2]
	c.require(strings.HasPrefix(c.Reply, "554 5.4.6 ") && strings.Contains(c.Reply, "Too many hops"), "end of data: %s, want 554 5.4.6 Too many hops", c.Reply)
	settleSink(ctx, k, 0, 0, time.Second)
	c.Delivered = envelopes(deliveries(k))
	c.require(len(deliveries(k)) == 0, "delivered: %s", c.Delivered)
	c.require(r.accepted() == 0, "the relay queued it")
	return nil
}

// relayBattery is the open-relay battery of internal/integration (after
// the classic relay testers' list and our own loops): local is the
// relay's domain, ip the address the client reached it on.
func relayBattery(local, ip string) [][2]string {
	const victim = "victim@remote.example"
	sp := "spammer@outside.example"
	return [][2]string{
		{sp, victim},
		{"", victim},
		{"user@" + local, victim},
		{"postmaster@" + local, victim},
		{"spammer@[" + ip + "]", victim},
		{sp, "victim%remote.example@" + local},
		{sp, "victim%remote.example@[" + ip + "]"},
		{sp, `"victim@remote.example"@` + local},
		{sp, `"victim%remote.example"@` + local},
		{sp, "victim@remote.example@" + local},
		{sp, "@" + local + ":victim@remote.example"},
		{sp, "@" + local + ",@other.example:victim@remote.example"},
		{sp, "remote.example!victim@" + local},
		{sp, "remote.example!victim"},
		{sp, "victim%remote.example"},
		{sp, "victim@remote.example."},
		{sp, "VICTIM@REMOTE.EXAMPLE"},
		{sp, "victim@" + local + ".remote.example"},
		{sp, "victim@evil-" + local},
		{sp, "victim@sub." + local},
		{sp, "victim@localhost"},
		{sp, "victim@localhost.localdomain"},
		{sp, "victim@[127.0.0.1]"},
		{sp, "victim@[IPv6:::1]"},
		{sp, "victim@[192.0.2.1]"},
		{sp, "victim@" + local + "@remote.example"},
		{sp, "victim%remote.example%" + local + "@" + local},
	}
}

func battery(migration bool) func(ctx context.Context, e *seams, c *SeamCase) error {
	return func(ctx context.Context, e *seams, c *SeamCase) error {
		src, err := e.outside()
		if err != nil {
			return err
		}
		var r *relayProc
		var store *sink
		local := "example.test"
		if migration {
			local = "nix.co.jj"
			if r, store, err = e.migration(ctx); err != nil {
				return err
			}
		} else {
			z, err := e.dns()
			if err != nil {
				return err
			}
			if r, _, err = e.startRelay(ctx, "defaults", "-dns-resolver", z.addr, "-web-listen", ""); err != nil {
				return err
			}
		}
		host, _, _ := net.SplitHostPort(r.addr)
		attempts := relayBattery(local, host)
		var relayed []string
		replies := map[string]int{}
		for i := 0; i < len(attempts); i += 4 {
			batch := attempts[i:min(i+4, len(attempts))]
			var cmds []string
			for _, a := range batch {
				cmds = append(cmds, "MAIL FROM:<"+a[0]+">", "RCPT TO:<"+a[1]+">", "RSET")
			}
			got, err := e.dialog(ctx, src, r.addr, cmds...)
			if err != nil {
				return err
			}
			for j, a := range batch {
				rcpt := got[3*j+1]
				m := enhancedRE.FindStringSubmatch(rcpt)
				if m == nil || m[1][0] != '5' {
					relayed = append(relayed, fmt.Sprintf("MAIL FROM:<%s> RCPT TO:<%s>: %s (MAIL: %s)", a[0], a[1], rcpt, got[3*j]))
					replies[rcpt[:min(3, len(rcpt))]]++
					continue
				}
				replies[m[1]+" "+m[2]]++
			}
		}
		got, err := e.dialog(ctx, src, r.addr, "MAIL FROM:<friend@outside.example>", "RCPT TO:<postmaster@"+local+">")
		if err != nil {
			return err
		}
		c.Reply = fmt.Sprintf("RCPT: %s; own domain: %s", replyCounts(replies), got[1])
		c.Delivered = fmt.Sprintf("%d attempts, %d relayed", len(attempts), len(relayed))
		c.require(len(attempts) == 27, "%d attempts, want 27", len(attempts))
		c.require(len(relayed) == 0, "relayed for an untrusted client: %s", strings.Join(relayed, "; "))
		c.require(strings.HasPrefix(got[1], "250 "), "RCPT TO:<postmaster@%s> from the same client: %s", local, got[1])
		c.require(r.accepted() == 0, "the relay queued %d messages", r.accepted())
		if store != nil {
			c.require(len(deliveries(store)) == 0, "the store got %s", envelopes(deliveries(store)))
		}
		return nil
	}
}

func hostSpellings(ctx context.Context, e *seams, c *SeamCase) error {
	src, err := e.outside()
	if err != nil {
		return err
	}
	r, store, err := e.migration(ctx)
	if err != nil {
		return err
	}
	if err := e.rejectedAll(ctx, c, r, src, "spammer@outside.example", []string{"user@LOCALHOST.", "user@a.localhost",
		"user@[IPv6:::1]", "user@[IPv6:::ffff:127.0.0.1]", "user@[0.0.0.0]", "user@relay.nix.co.jj", "user@[" + src + "]"}, "5"); err != nil {
		return err
	}
	settleSink(ctx, store, 0, 0, time.Second)
	c.Delivered = envelopes(deliveries(store))
	c.require(len(deliveries(store)) == 0, "delivered %s", c.Delivered)
	return nil
}
