package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"time"
)

func smallerCases() []seamDef {
	const g = "Smaller"
	return []seamDef{
		{"15", g, "1,001 recipients in one transaction (pipelined), then NOOP, DATA",
			"1,000 × 250, then 452 4.5.3; NOOP 250 (the session goes on); the message delivered to 1,000", thousandAndOne, nil},
		{"16", g, "-max-connections 20: 20 idle connections, then a 21st; then the 20 close and a new client comes",
			"the 21st gets 421 4.7.0 before it sends anything; afterwards a new client gets 220", connectionCap, nil},
		{"17", g, "-auth-check tag: a message carrying a forged \"Authentication-Results: relay.seams.test.; spf=pass\" (our authserv-id with a trailing dot)",
			"250; the forged field removed before delivery, the relay's own added, another host's kept", forgedAuthResults, nil},
		{"18", g, "terminal escapes: EHLO ev\\x1b]0;pwned\\x07il, then a Subject with ESC/BEL, held by access \"Connect:127.0.0.2 QUARANTINE:\\x1b[5mheld\\x07\"",
			"501 to the EHLO (never echoed); 250 (held); relay queue list/show and quarantine list/show print no ESC or BEL (shown as ?)", escapesInAdmin, nil},
	}
}

func thousandAndOne(ctx context.Context, e *seams, c *SeamCase) error {
	r, k, err := e.plainRelay(ctx)
	if err != nil {
		return err
	}
	t, _, err := e.dial(ctx, "127.0.0.2", r.addr)
	if err != nil {
		return err
	}
	cmds := []string{"EHLO lists.example", "MAIL FROM:<list@example.net>"}
	for i := range 1001 {
		cmds = append(cmds, fmt.Sprintf("RCPT TO:<r%04d@example.test>", i))
	}
	got, err := t.do(append(cmds, "NOOP", "DATA")...)
	if err != nil {
		return err
	}
	end, err := t.do("Subject: many\r\n\r\nto many\r\n.")
	if err != nil {
		return err
	}
	got = append(append(got, end...), t.quit()...)
	ok := 0
	for _, r := range got[2:1002] {
		if strings.HasPrefix(r, "250 ") {
			ok++
		}
	}
	c.Reply = fmt.Sprintf("RCPT 1–1000: 250 ×%d; RCPT 1001: %s; NOOP: %s; DATA: %s; end of data: %s", ok, got[1002], got[1003], got[1004], end[0])
	c.expectCodes(got, "250 250"+strings.Repeat(" 250", 1000)+" 452 250 354 250 221")
	c.require(strings.HasPrefix(got[1002], "452 4.5.3 "), "RCPT 1001: %s, want 452 4.5.3", got[1002])
	var rcpts []string
	waitFor(ctx, 60*time.Second, func() bool {
		rcpts = rcpts[:0]
		for _, m := range k.received() {
			rcpts = append(rcpts, m.Rcpts...)
		}
		return len(rcpts) >= 1000
	})
	time.Sleep(time.Second)
	d := deliveries(k)
	n := 0
	seen := map[string]bool{}
	for _, t := range d {
		for _, rc := range t.Rcpts {
			seen[wirePath(rc)] = true
			n++
		}
	}
	c.Delivered = fmt.Sprintf("%d transaction(s) to the next hop, %d recipients (%d distinct)", len(d), n, len(seen))
	c.require(n == 1000 && len(seen) == 1000, "delivered to %d recipients (%d distinct), want 1000", n, len(seen))
	c.require(seen["<r0000@example.test>"] && seen["<r0999@example.test>"] && !seen["<r1000@example.test>"], "not the first 1000 recipients")
	return nil
}

func connectionCap(ctx context.Context, e *seams, c *SeamCase) error {
	r, _, err := e.plainRelay(ctx, "-max-connections", "20")
	if err != nil {
		return err
	}
	var open []*talk
	greeted := 0
	for i := range 20 {
		t, banner, err := dialTalk(ctx, "127.0.0.2", r.addr)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i+1, err)
		}
		open = append(open, t)
		e.talks = append(e.talks, t)
		if strings.HasPrefix(banner, "220 ") {
			greeted++
		}
	}
	over, overBanner, err := dialTalk(ctx, "127.0.0.3", r.addr)
	if err != nil {
		return fmt.Errorf("the 21st connection: %w", err)
	}
	e.talks = append(e.talks, over)
	for _, t := range open {
		t.close()
	}
	var after string
	waitFor(ctx, 20*time.Second, func() bool {
		t, banner, err := dialTalk(ctx, "127.0.0.4", r.addr)
		if err != nil {
			return false
		}
		defer t.close()
		after = banner
		return strings.HasPrefix(banner, "220 ")
	})
	got, err := e.dialog(ctx, "127.0.0.5", r.addr, "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.test>")
	if err != nil {
		return err
	}
	c.Reply = fmt.Sprintf("first 20: 220 ×%d; 21st: %s; after they closed: %s", greeted, overBanner, after)
	c.Delivered = "n/a (no message)"
	c.require(greeted == 20, "%d of the first 20 connections greeted", greeted)
	c.require(strings.HasPrefix(overBanner, "421 4.7.0 "), "the 21st connection: %q, want 421 4.7.0", overBanner)
	c.require(strings.HasPrefix(after, "220 "), "after the 20 closed: %q, want 220", after)
	c.require(strings.HasPrefix(got[1], "250 "), "a transaction after the flood: %v", got)
	return nil
}

func forgedAuthResults(ctx context.Context, e *seams, c *SeamCase) error {
	z, err := e.dns()
	if err != nil {
		return err
	}
	r, k, err := e.plainRelay(ctx, "-trusted", "127.0.0.1", "-auth-check", "tag", "-dns-resolver", z.addr)
	if err != nil {
		return err
	}
	msg := "Authentication-Results: relay.seams.test.; spf=pass smtp.mailfrom=bank.example\r\n" +
		"Authentication-Results: other.example; dkim=pass header.d=other.example\r\n" +
		"From: <bank@bank.example>\r\nTo: <bob@example.test>\r\nSubject: verify your account\r\n\r\nclick\r\n.\r\n"
	got, err := e.sendRaw(ctx, "127.0.0.2", r.addr, "bank@bank.example", []string{"bob@example.test"}, msg)
	if err != nil {
		return err
	}
	c.Reply = got[len(got)-2]
	c.expectCodes(got, "250 250 250 354 250 221")
	rec := settleSink(ctx, k, 1, 20*time.Second, 0)
	if !c.require(len(rec) == 1, "%d messages delivered, want 1", len(rec)) {
		return nil
	}
	fields := regexp.MustCompile(`(?m)^Authentication-Results:[^\r\n]*(\r\n[ \t][^\r\n]*)*`).FindAllString(string(rec[0].Data), -1)
	c.Delivered = fmt.Sprintf("%d Authentication-Results fields: %s", len(fields), strings.Join(fields, " | "))
	c.require(!strings.Contains(string(rec[0].Data), "spf=pass smtp.mailfrom=bank.example"), "the forged field was delivered")
	c.require(strings.Contains(string(rec[0].Data), "Authentication-Results: other.example; dkim=pass"), "another host's field was removed")
	own := 0
	for _, f := range fields {
		if strings.HasPrefix(f, "Authentication-Results: relay.seams.test;") {
			own++
		}
	}
	c.require(own == 1, "%d Authentication-Results fields of the relay's own, want 1", own)
	return nil
}

func escapesInAdmin(ctx context.Context, e *seams, c *SeamCase) error {
	dir, err := e.s.dir("seams-" + e.c.ID)
	if err != nil {
		return err
	}
	acc, err := writeFile(dir, "access", "Connect:127.0.0.2 QUARANTINE:\x1b[5mheld\x07\n")
	if err != nil {
		return err
	}
	r, err := e.startRelayIn(ctx, dir, "-trusted", "", "-access", acc, "-hostname", "relay.seams.test")
	if err != nil {
		return err
	}
	t, _, err := e.dial(ctx, "127.0.0.2", r.addr)
	if err != nil {
		return err
	}
	got, err := t.do("EHLO ev\x1b]0;pwned\x07il", "EHLO client.example", "MAIL FROM:<alice@example.net>", "RCPT TO:<bob@example.test>", "DATA",
		"Subject: \x1b[31mred\x07\r\n\r\nbody \x1b[2J\x07\r\n.")
	if err != nil {
		return err
	}
	got = append(got, t.quit()...)
	c.Reply = got[0] + "; " + got[5]
	c.expectCodes(got, "501 250 250 250 354 250 221")
	spool := dir + "/spool"
	admin := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, e.s.relayBin, append(append(args[:2:2], "-spool", spool), args[2:]...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	var id string
	waitFor(ctx, 20*time.Second, func() bool {
		out, _ := admin("queue", "list")
		if m := regexp.MustCompile(`(?m)^([0-9A-Z]{6,})\s`).FindStringSubmatch(out); m != nil {
			id = m[1]
		}
		return id != ""
	})
	if !c.require(id != "", "the held message is not in the queue") {
		return nil
	}
	var shown []string
	all := ""
	for _, cmd := range [][]string{{"queue", "list"}, {"queue", "show", id}, {"queue", "show", "-body", id},
		{"quarantine", "list"}, {"quarantine", "show", id}} {
		out, err := admin(cmd...)
		c.require(err == nil, "relay %s: %v: %s", strings.Join(cmd, " "), err, out)
		c.require(!strings.ContainsAny(out, "\x1b\x07"), "relay %s prints ESC or BEL: %q", strings.Join(cmd, " "), out)
		shown = append(shown, strings.TrimSuffix(strings.Join(cmd, " "), " "+id))
		all += out
	}
	for _, want := range []string{"Subject: ?[31mred?"} {
		c.require(strings.Contains(all, want), "the admin output does not show %q", want)
	}
	sort.Strings(shown)
	c.Delivered = fmt.Sprintf("held as %s, nothing delivered; %s: no ESC or BEL, shown as \"Subject: ?[31mred?\"",
		id, strings.Join(shown, ", "))
	return nil
}
