package webui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// The list page with 200 held messages, as a user sees it: the hot path
// of the page (summaries come from the cache after the first request).
func BenchmarkList(b *testing.B) {
	e := newEnv(b, nil)
	for i := range 200 {
		e.enqueue("spam score 12.5", spam(fmt.Sprintf("Offer %d", i), "buy now"), bob, carol)
	}
	c := e.client()
	c.login(bob)
	u, err := url.Parse(e.ts.URL)
	if err != nil {
		b.Fatal(err)
	}
	cookie := c.c.Jar.Cookies(u)
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		for _, ck := range cookie {
			req.AddCookie(ck)
		}
		w := httptest.NewRecorder()
		e.ui.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

// Parsing a typical multipart message for display.
func BenchmarkViewBytes(b *testing.B) {
	ui, err := New(Config{Queue: &fakeQueue{}, Authenticate: authenticate})
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("From: A <a@example.net>\r\nSubject: offer\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		strings.Repeat("Buy now, cheap watches and more.\r\n", 200) +
		"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>" + strings.Repeat("Buy now, cheap watches and more.<br>\r\n", 200) + "</p>\r\n--b--\r\n")
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		ui.viewBytes(context.Background(), msg)
	}
}

func BenchmarkParseHeader(b *testing.B) {
	h := []byte(strings.Repeat("Received: from mx.example.net (mx.example.net [192.0.2.1])\r\n\tby relay.example.org with ESMTPS id ABC\r\n", 10) +
		"From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.net>\r\nSubject: =?UTF-8?B?w6nDqcOp?=\r\n\r\nbody")
	b.SetBytes(int64(len(h)))
	for b.Loop() {
		parseHeader(h, maxFields)
	}
}
