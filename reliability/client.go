package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/emersion/go-smtp"
)

// txn is one mail transaction a client sends.
type txn struct {
	addr    string // the relay
	src     string // source address ("" for any, "127.0.0.2" for an outside client)
	helo    string
	from    string
	to      []string
	body    []byte // the message; go-smtp's writer turns LF into CRLF and dot-stuffs
	timeout time.Duration
}

// outcome is how the relay answered a transaction: Code is the reply that
// ended it (250 after DATA for an accepted message; 0 when the connection
// broke without a reply) and Stage the command it answered.
type outcome struct {
	Code  int
	Stage string
	Text  string
	Err   error
}

// acked tells whether the message was accepted (250 after DATA).
func (o outcome) acked() bool { return o.Code == 250 && o.Stage == "DATA" }

// class is the reply class for counting: "250", "421", ... or "no reply".
func (o outcome) class() string {
	if o.Code == 0 {
		return "no reply"
	}
	return strconv.Itoa(o.Code)
}

// send runs one transaction and QUIT.
func send(ctx context.Context, t txn) outcome {
	if t.timeout == 0 {
		t.timeout = 30 * time.Second
	}
	if t.helo == "" {
		t.helo = "client.reliability.test"
	}
	d := net.Dialer{Timeout: t.timeout}
	if t.src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(t.src)}
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return outcome{Stage: "connect", Err: err}
	}
	// A cancelled context (a crash cycle ending) closes the connection.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := smtp.NewClient(conn)
	defer c.Close()
	c.CommandTimeout, c.SubmissionTimeout = t.timeout, t.timeout
	fail := func(stage string, err error) outcome {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return outcome{Code: se.Code, Stage: stage, Text: se.Message, Err: err}
		}
		return outcome{Stage: stage, Err: err}
	}
	if err := c.Hello(t.helo); err != nil {
		return fail("EHLO", err)
	}
	if err := c.Mail(t.from, nil); err != nil {
		return fail("MAIL", err)
	}
	for _, r := range t.to {
		if err := c.Rcpt(r, nil); err != nil {
			return fail("RCPT", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fail("DATA", err)
	}
	if _, err := w.Write(t.body); err != nil {
		return fail("DATA", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return fail("DATA", err)
	}
	_ = c.Quit()
	return outcome{Code: 250, Stage: "DATA", Text: resp.StatusText}
}

// plainMessage builds a small message with the given Message-ID and a
// body of about size bytes.
func plainMessage(id string, size int) []byte {
	b := fmt.Appendf(nil, "From: <sender@example.net>\r\nTo: <rcpt@example.test>\r\nSubject: reliability %s\r\n"+
		"Message-ID: %s\r\nDate: %s\r\n\r\n", id, id, time.Now().Format(time.RFC1123Z))
	line := []byte("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n")
	for n := 0; n < size; n += len(line) {
		b = append(b, line...)
	}
	return b
}
