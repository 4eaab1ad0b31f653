package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// probe runs one whole SMTP transaction, connect to QUIT, the way a
// sending MTA does (no pipelining), and returns how long it took. src, if
// set, is the local address to connect from.
func probe(ctx context.Context, addr, src string, msg []byte) (time.Duration, error) {
	d := net.Dialer{Timeout: 30 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	step := func(cmd string, want int) error {
		if cmd != "" {
			w.WriteString(cmd + "\r\n")
			if err := w.Flush(); err != nil {
				return err
			}
		}
		code, text, err := readReply(r)
		if err != nil {
			return fmt.Errorf("after %q: %w", cmd, err)
		}
		if code != want {
			return fmt.Errorf("after %q: %d %s", cmd, code, text)
		}
		return nil
	}
	for _, s := range []struct {
		cmd  string
		want int
	}{{"", 220}, {"EHLO " + heloName, 250}, {"MAIL FROM:<" + senderAddr + ">", 250},
		{"RCPT TO:<" + rcptAddr + ">", 250}, {"DATA", 354}} {
		if err := step(s.cmd, s.want); err != nil {
			return 0, err
		}
	}
	w.Write(dotStuff(msg))
	if err := step(".", 250); err != nil {
		return 0, err
	}
	if err := step("QUIT", 221); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// readReply reads one (possibly multi-line) SMTP reply.
func readReply(r *bufio.Reader) (int, string, error) {
	var text []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return 0, "", fmt.Errorf("short reply line %q", line)
		}
		code := 0
		for _, c := range line[:3] {
			if c < '0' || c > '9' {
				return 0, "", fmt.Errorf("bad reply line %q", line)
			}
			code = code*10 + int(c-'0')
		}
		text = append(text, line)
		if len(line) == 3 || line[3] != '-' {
			return code, strings.Join(text, " / "), nil
		}
	}
}

// dotStuff prepares a CRLF message for DATA (RFC 5321 §4.5.2); the
// terminating "." is sent by the caller.
func dotStuff(msg []byte) []byte {
	var b bytes.Buffer
	for line := range bytes.Lines(msg) {
		if len(line) > 0 && line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}
