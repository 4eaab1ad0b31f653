package webui_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/postern/postern/examples/relay/internal/webui"
	"github.com/postern/postern/queue"
)

// A quarantined message, seen and released by its recipient. The relay
// serves the page with its own TLS certificate; httptest stands in here.
func Example() {
	dir, _ := os.MkdirTemp("", "webui-example-")
	defer os.RemoveAll(dir)
	q, err := queue.Open(queue.Config{Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Close()
	id, _ := q.Enqueue(context.Background(), queue.Envelope{From: "spammer@example.net",
		Recipients: []queue.Recipient{{Addr: "bob@example.org"}}, Hold: "spam score 14.2"},
		strings.NewReader("Subject: Cheap watches\r\n\r\nBuy now!\r\n"))

	ui, err := webui.New(webui.Config{
		Queue: q,
		Authenticate: func(_ context.Context, user, password string) error {
			if user == "bob@example.org" && password == "secret" {
				return nil
			}
			return errors.New("no")
		},
		// Owns is nil: bob@example.org owns the address bob@example.org.
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ts := httptest.NewTLSServer(ui)
	defer ts.Close()
	c := ts.Client()
	c.Jar, _ = cookiejar.New(nil)
	get := func(path string) string {
		resp, err := c.Get(ts.URL + path)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	field := func(page, name string) string {
		m := regexp.MustCompile(`name="` + name + `" value="([^"]*)"`).FindStringSubmatch(page)
		if m == nil {
			return ""
		}
		return m[1]
	}

	// Log in: the form carries a token that must come back with it.
	form := get("/login")
	resp, _ := c.PostForm(ts.URL+"/login", url.Values{"login_token": {field(form, "login_token")},
		"user": {"bob@example.org"}, "password": {"secret"}})
	resp.Body.Close()
	list := get("/")
	fmt.Println("listed:", strings.Contains(list, "Cheap watches"))

	// Release it: every POST carries the session's CSRF token.
	resp, _ = c.PostForm(ts.URL+"/msg/"+id+"/release", url.Values{"csrf": {field(list, "csrf")}})
	resp.Body.Close()
	info, _ := q.Show(id)
	fmt.Println("held:", info.Held())
	// Output:
	// listed: true
	// held: false
}

// Digests composes the daily "your quarantine" notices; the relay queues
// them.
func ExampleServer_Digests() {
	dir, _ := os.MkdirTemp("", "webui-example-")
	defer os.RemoveAll(dir)
	q, _ := queue.Open(queue.Config{Dir: dir})
	defer q.Close()
	q.Enqueue(context.Background(), queue.Envelope{From: "spammer@example.net",
		Recipients: []queue.Recipient{{Addr: "bob@example.org"}}, Hold: "spam score 14.2"},
		strings.NewReader("Subject: Cheap watches\r\n\r\nBuy now!\r\n"))
	ui, _ := webui.New(webui.Config{Queue: q,
		Authenticate: func(context.Context, string, string) error { return errors.New("no") }})

	ds, err := ui.Digests(context.Background(), webui.DigestConfig{From: "postmaster@example.org",
		URL: "https://relay.example.org:8443"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, d := range ds {
		fmt.Println(d.To, len(d.Items), d.Items[0].Subject, d.Items[0].Reason)
	}
	// Output:
	// bob@example.org 1 Cheap watches spam score 14.2
}

var _ http.Handler = (*webui.Server)(nil)
