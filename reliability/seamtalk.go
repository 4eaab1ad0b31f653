package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"
)

// outsideAddr returns a source address no configuration trusts. The
// built-in defaults (and most sites) trust all of 127.0.0.0/8, so an
// Internet client needs an address of its own: one of TEST-NET-3
// (203.0.113.0/24, RFC 5737; the integration tests take TEST-NET-2) is
// added to the loopback interface for the run and removed at close. That
// needs root; without it the error wraps ErrNoPrivilege.
func (s *suite) outsideAddr() (string, error) {
	s.outsideOnce.Do(func() {
		ipCmd, err := lookTool("ip")
		if err != nil {
			s.outsideErr = err
			return
		}
		if os.Geteuid() != 0 {
			s.outsideErr = fmt.Errorf("%w: an untrusted client address needs ip addr add", ErrNoPrivilege)
			return
		}
		addr := fmt.Sprintf("203.0.113.%d", 2+os.Getpid()%250)
		out, err := exec.Command(ipCmd, "addr", "add", addr+"/32", "dev", "lo").CombinedOutput()
		switch {
		case err == nil:
			s.onClose(func() { _ = exec.Command(ipCmd, "addr", "del", addr+"/32", "dev", "lo").Run() })
		case strings.Contains(string(out), "File exists"):
			// Left by an earlier run that was killed: use it.
		default:
			s.outsideErr = fmt.Errorf("reliability: ip addr add %s: %v: %s", addr, err, out)
			return
		}
		s.outside = addr
	})
	return s.outside, s.outsideErr
}

// talk is one SMTP conversation at the byte level, for what real clients
// must not send. Every reply line is checked (RFC 5321 §4.2); malformed
// ones are kept in bad.
type talk struct {
	conn  net.Conn
	lines chan replyLine
	bad   []string
	eof   bool
}

// dialTalk connects from src ("" for any) and returns the conversation
// and the banner (or the first reply, such as a 421).
func dialTalk(ctx context.Context, src, addr string) (*talk, string, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, "", err
	}
	t := &talk{conn: conn, lines: make(chan replyLine, 4096)}
	go readReplies(conn, t.lines)
	banner, err := t.replies(1)
	if err != nil {
		conn.Close()
		return nil, "", err
	}
	return t, banner[0], nil
}

// errNoReply is a conversation that ended, or went quiet, before the
// replies it was waiting for.
var errNoReply = errors.New("no reply")

// replies reads n replies and returns the last line of each (code,
// enhanced code and text).
func (t *talk) replies(n int) ([]string, error) {
	var out []string
	timer := time.NewTimer(60 * time.Second)
	defer timer.Stop()
	for len(out) < n {
		select {
		case l, ok := <-t.lines:
			if !ok {
				t.eof = true
				return out, fmt.Errorf("%w: the connection closed after %q", errNoReply, out)
			}
			if l.Err != "" {
				t.bad = append(t.bad, fmt.Sprintf("%q: %s", l.Raw, l.Err))
			}
			if l.Final {
				out = append(out, l.Raw)
			}
		case <-timer.C:
			return out, fmt.Errorf("%w within 60s after %q", errNoReply, out)
		}
	}
	return out, nil
}

// send writes s as it is.
func (t *talk) send(s string) error {
	_ = t.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := t.conn.Write([]byte(s))
	return err
}

// do sends each command with CRLF, pipelined, and returns their replies.
func (t *talk) do(cmds ...string) ([]string, error) {
	if err := t.send(strings.Join(cmds, "\r\n") + "\r\n"); err != nil {
		return nil, err
	}
	return t.replies(len(cmds))
}

// quit sends QUIT and returns every reply until the relay closes the
// connection, the 221 included.
func (t *talk) quit() []string {
	_ = t.send("QUIT\r\n")
	var out []string
	for {
		r, err := t.replies(1)
		out = append(out, r...)
		if err != nil {
			return out
		}
	}
}

func (t *talk) close() { t.conn.Close() }

// codes is the codes of replies, space-separated.
func codes(replies []string) string {
	var out []string
	for _, r := range replies {
		out = append(out, r[:min(3, len(r))])
	}
	return strings.Join(out, " ")
}

// wireTxn is one transaction as a client wrote it on the wire: the
// arguments of MAIL and RCPT exactly as sent, and the message text
// between DATA and the end of data, still dot-stuffed.
type wireTxn struct {
	Mail  string
	Rcpts []string
	Data  []byte
}

// wireTxns splits what a client sent (one connection) into transactions.
// The client is the relay speaking to a next hop, so every DATA is
// followed by message text up to CRLF "." CRLF (RFC 5321 §4.1.1.4).
func wireTxns(wire []byte) []wireTxn {
	var out []wireTxn
	var cur *wireTxn
	for len(wire) > 0 {
		line, rest, _ := bytes.Cut(wire, []byte("\r\n"))
		wire = rest
		cmd := string(line)
		upper := strings.ToUpper(cmd)
		switch {
		case strings.HasPrefix(upper, "MAIL FROM:"):
			out = append(out, wireTxn{Mail: cmd[len("MAIL FROM:"):]})
			cur = &out[len(out)-1]
		case strings.HasPrefix(upper, "RCPT TO:") && cur != nil:
			cur.Rcpts = append(cur.Rcpts, cmd[len("RCPT TO:"):])
		case upper == "DATA" && cur != nil:
			end := bytes.Index(wire, []byte("\r\n.\r\n"))
			if bytes.HasPrefix(wire, []byte(".\r\n")) {
				end = -2 // an empty message
			}
			if end == -1 {
				cur.Data = wire // cut short
				return out
			}
			cur.Data = wire[:end+2]
			wire = wire[end+5:]
		}
	}
	return out
}

// bareLineEnds counts CRs not followed by LF and LFs not preceded by CR.
func bareLineEnds(b []byte) int {
	n := 0
	for i, c := range b {
		switch {
		case c == '\r' && (i+1 == len(b) || b[i+1] != '\n'):
			n++
		case c == '\n' && (i == 0 || b[i-1] != '\r'):
			n++
		}
	}
	return n
}

// wirePath returns the path of a MAIL or RCPT argument as written,
// "<a b@c>" of "<\"a b\"@c> NOTIFY=NEVER": up to the ">" outside a
// quoted string (RFC 5321 §4.1.2).
func wirePath(arg string) string {
	quoted := false
	for i := 0; i < len(arg); i++ {
		switch c := arg[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == '>' && !quoted:
			return arg[:i+1]
		}
	}
	return arg
}
