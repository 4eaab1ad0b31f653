package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/queue"
	"github.com/postern/postern/ratelimit"
)

func TestNewValidates(t *testing.T) {
	q := &fakeQueue{}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no queue", Config{Authenticate: authenticate}},
		{"no authenticate", Config{Queue: q}},
		{"negative limit", Config{Queue: q, Authenticate: authenticate, MaxView: -1}},
		{"negative sessions", Config{Queue: q, Authenticate: authenticate, SessionIdle: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			assert.ErrorIs(t, err, ErrConfig)
		})
	}
	_, err := New(Config{Queue: q, Authenticate: authenticate})
	assert.NoError(t, err, "the zero value of every other field is usable")
}

// fakeQueue is only for the configuration test, which never asks it
// anything.
type fakeQueue struct{ queue.Queue }

func TestUsersSeeOnlyTheirOwnHeldMail(t *testing.T) {
	e := newEnv(t, nil)
	shared := e.enqueue("spam score 12.5", spam("Cheap watches", "buy now"), bob, carol)
	bobs := e.enqueue("spam score 30.0", spam("Lottery win", "you won"), bob)
	carols := e.enqueue("virus Eicar-Test-Signature", spam("Invoice", "see attachment"), carol)
	unheld := e.enqueue("", spam("Lunch?", "at noon"), bob)

	b := e.client().login(bob)
	list := b.get("/")
	require.Equal(t, http.StatusOK, list.StatusCode)
	for _, want := range []string{"Cheap watches", "Lottery win", "/msg/" + shared, "/msg/" + bobs, "spam score 30.0"} {
		assert.Contains(t, list.body, want)
	}
	for _, not := range []string{"Invoice", carols, "Lunch?", unheld, carol} {
		assert.NotContains(t, list.body, not, "bob's list shows only his held mail")
	}
	assert.Less(t, strings.Index(list.body, "Lottery win"), strings.Index(list.body, "Cheap watches"), "newest first")

	c := e.client().login(carol)
	list = c.get("/")
	assert.Contains(t, list.body, "Cheap watches")
	assert.Contains(t, list.body, "Invoice")
	assert.NotContains(t, list.body, "Lottery win")
	assert.NotContains(t, list.body, bob)

	// Another user's message is not found, whatever carol tries.
	token := c.csrf()
	r := c.get("/msg/" + bobs)
	assert.Equal(t, http.StatusNotFound, r.StatusCode)
	assert.NotContains(t, r.body, "Lottery win")
	for _, act := range []string{"release", "delete"} {
		r = c.post("/msg/"+bobs+"/"+act, url.Values{"csrf": {token}})
		assert.Equal(t, http.StatusNotFound, r.StatusCode, act)
		assert.True(t, e.held(bobs), "carol cannot %s bob's message", act)
	}
	r = c.post("/msg/"+unheld+"/release", url.Values{"csrf": {token}})
	assert.Equal(t, http.StatusNotFound, r.StatusCode, "mail that is not held is not the page's")
	r = c.get("/msg/..%2f..%2fetc%2fpasswd")
	assert.Equal(t, http.StatusNotFound, r.StatusCode)

	// The admin sees everything held, and the relay's status.
	a := e.client().login(admin)
	list = a.get("/")
	for _, want := range []string{"Cheap watches", "Lottery win", "Invoice"} {
		assert.Contains(t, list.body, want)
	}
	assert.NotContains(t, list.body, "Lunch?")
	assert.Equal(t, http.StatusNotFound, c.get("/admin").StatusCode, "the admin page is the admin's")
	st := a.get("/admin")
	require.Equal(t, http.StatusOK, st.StatusCode)
	assert.Contains(t, st.body, `<dd id="queued">4</dd>`)
	assert.Contains(t, st.body, `<dd id="held">3</dd>`)
	assert.Contains(t, st.body, "No statistics are available")
}

// Releasing a message held for two users releases it for the one who
// asked: their recipient is split off and delivered, the other user's
// copy stays held and listed for them.
func TestReleaseSplitsSharedMessage(t *testing.T) {
	e := newEnv(t, nil)
	shared := e.enqueue("spam score 12.5", spam("Cheap watches", "buy now"), bob, carol)
	b := e.client().login(bob)
	r := b.post("/msg/"+shared+"/release", url.Values{"csrf": {b.csrf()}})
	require.Equal(t, http.StatusSeeOther, r.StatusCode, r.body)
	assert.Equal(t, "/", r.Header.Get("Location"))

	list := b.get("/")
	assert.Contains(t, list.body, "Released your copy of message "+shared+" for "+bob)
	assert.NotContains(t, list.body, "/msg/"+shared, "no longer held for bob")
	assert.NotContains(t, b.get("/").body, "Released", "the notice is shown once")

	all := e.q.List(queue.ListFilter{})
	require.Len(t, all, 2)
	var released queue.Info
	for _, info := range all {
		if info.ID != shared {
			released = info
		}
	}
	assert.False(t, released.Held(), "bob's copy is released")
	assert.Equal(t, bob, released.Envelope.Recipients[0].Addr)
	assert.Len(t, released.Envelope.Recipients, 1)
	assert.True(t, e.held(shared), "carol's stays held")
	assert.Contains(t, e.client().login(carol).get("/").body, "/msg/"+shared)

	rec := e.logs.Records(t, "quarantine page")
	var found bool
	for _, l := range rec {
		if l["action"] == "release" {
			found = true
			assert.Equal(t, bob, l["user"])
			assert.Equal(t, shared, l["queue_id"])
			assert.Equal(t, released.ID, l["new_id"])
			assert.Equal(t, "127.0.0.1", l["remote_ip"])
		}
	}
	assert.True(t, found, "the release is logged")
}

func TestDeleteAndAdminRelease(t *testing.T) {
	e := newEnv(t, nil)
	mine := e.enqueue("spam", spam("Pills", "cheap"), bob)
	shared := e.enqueue("spam", spam("Cheap watches", "buy now"), bob, carol)
	b := e.client().login(bob)
	r := b.post("/msg/"+mine+"/delete", url.Values{"csrf": {b.csrf()}})
	require.Equal(t, http.StatusSeeOther, r.StatusCode, r.body)
	_, err := e.q.Show(mine)
	assert.ErrorIs(t, err, queue.ErrNotFound, "bob's own message is deleted whole")
	assert.Contains(t, b.get("/").body, "Deleted message "+mine)

	// The admin acts on the whole message, every recipient.
	a := e.client().login(admin)
	r = a.post("/msg/"+shared+"/release", url.Values{"csrf": {a.csrf()}})
	require.Equal(t, http.StatusSeeOther, r.StatusCode, r.body)
	info, err := e.q.Show(shared)
	require.NoError(t, err)
	assert.False(t, info.Held())
	total, _ := e.q.Len()
	assert.Equal(t, 1, total, "no copy was made")
}

func TestCSRF(t *testing.T) {
	e := newEnv(t, nil)
	id := e.enqueue("spam", spam("Cheap watches", "buy now"), bob)
	b := e.client().login(bob)
	token := b.csrf()
	for _, tc := range []struct {
		name string
		path string
		form url.Values
		hdr  []string
	}{
		{"no token", "/msg/" + id + "/release", url.Values{}, nil},
		{"empty token", "/msg/" + id + "/release", url.Values{"csrf": {""}}, nil},
		{"wrong token", "/msg/" + id + "/delete", url.Values{"csrf": {token[:len(token)-1] + "x"}}, nil},
		{"token in the query string", "/msg/" + id + "/release?csrf=" + token, url.Values{}, nil},
		{"cross-site request with the token", "/msg/" + id + "/release", url.Values{"csrf": {token}},
			[]string{"Sec-Fetch-Site", "cross-site"}},
		{"other origin with the token", "/msg/" + id + "/release", url.Values{"csrf": {token}},
			[]string{"Origin", "https://evil.example"}},
		{"logout without token", "/logout", url.Values{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.post(tc.path, tc.form, tc.hdr...)
			assert.Equal(t, http.StatusForbidden, r.StatusCode)
			assert.True(t, e.held(id))
		})
	}
	assert.Equal(t, http.StatusOK, b.get("/").StatusCode, "still logged in")

	// Without a session there is no token to have.
	r := e.client().post("/msg/"+id+"/release", url.Values{"csrf": {token}})
	assert.Equal(t, http.StatusForbidden, r.StatusCode)
	assert.True(t, e.held(id))

	// The login form has its own token (double submit): a login posted
	// from elsewhere is refused.
	r = e.client().post("/login", url.Values{"user": {bob}, "password": {passwords[bob]}})
	assert.Equal(t, http.StatusForbidden, r.StatusCode)
	assert.NotContains(t, r.Header.Values("Set-Cookie"), sessionCookie)

	var refused int
	for _, l := range e.logs.Records(t, "quarantine page") {
		if l["action"] == "csrf-refused" {
			refused++
		}
	}
	assert.Equal(t, 8, refused, "every refusal is logged")
}

func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	for range 5 {
		r := c.tryLogin(bob, "guess", "")
		assert.Equal(t, http.StatusUnauthorized, r.StatusCode)
		assert.Contains(t, r.body, "Wrong user name or password")
	}
	r := c.tryLogin(bob, passwords[bob], "")
	assert.Equal(t, http.StatusTooManyRequests, r.StatusCode, "blocked, even with the right password")
	assert.Contains(t, r.body, "Too many failed logins")
	assert.Equal(t, "600", r.Header.Get("Retry-After"))
	r = c.tryLogin(carol, passwords[carol], "")
	assert.Equal(t, http.StatusTooManyRequests, r.StatusCode, "the client is blocked for every user")

	e.clock.Advance(11 * time.Minute)
	c.login(bob)

	var actions []string
	for _, l := range e.logs.Records(t, "quarantine page") {
		actions = append(actions, l["action"].(string))
	}
	assert.Equal(t, []string{"login-failed", "login-failed", "login-failed", "login-failed", "login-failed",
		"login-blocked", "login-blocked", "login"}, actions)
}

// The limiter is shared with SMTP AUTH: an account locked by failures
// from other networks (password guessing on the submission port) is
// locked on the page too, and an unknown account answers the same.
func TestLoginAccountLocked(t *testing.T) {
	lim, err := ratelimit.NewAuthLimiter(ratelimit.AuthConfig{})
	require.NoError(t, err)
	e := newEnv(t, func(c *Config) { c.Limiter = lim })
	ctx := context.Background()
	for _, user := range []string{bob, "nobody@example.test"} {
		for i := range 10 {
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i/5)})
			require.NoError(t, lim.RecordAuthFailure(ctx, lim.LoginKeys(ip, user)...))
		}
		r := e.client().tryLogin(user, passwords[user], "")
		assert.Equal(t, http.StatusTooManyRequests, r.StatusCode, user)
		assert.Equal(t, "600", r.Header.Get("Retry-After"), user)
	}
	e.client().login(carol)
}

// Sessions follow the credentials: a user whose password changed, or who
// was removed, is logged out at the next request, GET or POST.
func TestSessionRevokedWithCredentials(t *testing.T) {
	var mu sync.Mutex
	versions := map[string]string{bob: "v1", carol: "v1"}
	e := newEnv(t, func(c *Config) {
		c.Credential = func(user string) (string, bool) {
			mu.Lock()
			defer mu.Unlock()
			v, ok := versions[user]
			return v, ok
		}
	})
	set := func(user, v string) {
		mu.Lock()
		defer mu.Unlock()
		if v == "" {
			delete(versions, user)
		} else {
			versions[user] = v
		}
	}
	b := e.client().login(bob)
	c := e.client().login(carol)
	csrf := c.csrf()
	assert.Equal(t, http.StatusOK, b.get("/").StatusCode)

	set(bob, "v2") // a new password
	r := b.get("/")
	assert.Equal(t, http.StatusSeeOther, r.StatusCode)
	assert.Equal(t, "/login?next=%2F", r.Header.Get("Location"))
	set(bob, "v1")
	assert.Equal(t, http.StatusSeeOther, b.get("/").StatusCode, "the session is gone, not suspended")
	assert.Equal(t, http.StatusOK, b.get("/login").StatusCode, "the login form, not a redirect")

	set(carol, "") // removed from the credentials file
	r = c.post("/logout", url.Values{"csrf": {csrf}})
	assert.Equal(t, http.StatusForbidden, r.StatusCode)
	r = e.client().tryLogin(carol, passwords[carol], "")
	assert.Equal(t, http.StatusUnauthorized, r.StatusCode)

	e.client().login(bob)
	n := 0
	for _, l := range e.logs.Records(t, "quarantine page") {
		if l["action"] == "session-revoked" {
			n++
		}
	}
	assert.Equal(t, 2, n)
}

func TestNoOpenRedirect(t *testing.T) {
	e := newEnv(t, nil)
	id := e.enqueue("spam", spam("Cheap watches", "buy now"), bob)
	for _, tc := range []struct{ next, want string }{
		{"", "/"},
		{"/msg/" + id, "/msg/" + id},
		{"/admin", "/admin"},
		{"https://evil.example/", "/"},
		{"//evil.example/", "/"},
		{"/\\evil.example", "/"},
		{"/msg/x/../../evil", "/"},
		{"javascript:alert(1)", "/"},
		{"/msg/" + id + "\r\nSet-Cookie: x=y", "/"},
	} {
		t.Run(tc.next, func(t *testing.T) {
			r := e.client().tryLogin(bob, passwords[bob], tc.next)
			require.Equal(t, http.StatusSeeOther, r.StatusCode)
			assert.Equal(t, tc.want, r.Header.Get("Location"))
		})
	}
	// Logged out, a link to a message leads to the login form and back.
	r := e.client().get("/msg/" + id)
	assert.Equal(t, http.StatusSeeOther, r.StatusCode)
	assert.Equal(t, "/login?next=%2Fmsg%2F"+id, r.Header.Get("Location"))
}

func TestHeadersAndCookies(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	for _, path := range []string{"/login", "/nope", "/static/style.css"} {
		r := c.get(path)
		assert.Contains(t, r.Header.Get("Content-Security-Policy"), "default-src 'none'", path)
		assert.Contains(t, r.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'", path)
		assert.NotContains(t, r.Header.Get("Content-Security-Policy"), "script-src", path)
		assert.Equal(t, "DENY", r.Header.Get("X-Frame-Options"), path)
		assert.Equal(t, "nosniff", r.Header.Get("X-Content-Type-Options"), path)
	}
	r := c.tryLogin(bob, passwords[bob], "")
	var sess *http.Cookie
	for _, ck := range r.Cookies() {
		if ck.Name == sessionCookie {
			sess = ck
		}
	}
	require.NotNil(t, sess)
	assert.True(t, sess.Secure)
	assert.True(t, sess.HttpOnly)
	assert.Equal(t, http.SameSiteLaxMode, sess.SameSite)
	assert.Equal(t, "/", sess.Path)
	assert.Empty(t, sess.Domain)
	assert.Len(t, sess.Value, 43, "256 random bits")
	assert.Equal(t, "no-store", c.get("/").Header.Get("Cache-Control"))
	assert.Equal(t, "max-age=31536000", c.get("/login").Header.Get("Strict-Transport-Security"))

	// RFC 6797 §7.2: no HSTS over plain HTTP.
	plain := httptest.NewServer(e.ui)
	defer plain.Close()
	resp, err := http.Get(plain.URL + "/login")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Empty(t, resp.Header.Get("Strict-Transport-Security"))
}

func TestSessionEnds(t *testing.T) {
	e := newEnv(t, nil)
	b := e.client().login(bob)
	e.clock.Advance(29 * time.Minute)
	assert.Equal(t, http.StatusOK, b.get("/").StatusCode)
	e.clock.Advance(31 * time.Minute)
	assert.Equal(t, http.StatusSeeOther, b.get("/").StatusCode, "idle too long")

	b = e.client().login(bob)
	for range 25 {
		e.clock.Advance(29 * time.Minute)
		b.get("/")
	}
	assert.Equal(t, http.StatusSeeOther, b.get("/").StatusCode, "12 hours after login, whatever happened")

	b = e.client().login(bob)
	r := b.post("/logout", url.Values{"csrf": {b.csrf()}})
	assert.Equal(t, http.StatusSeeOther, r.StatusCode)
	assert.Equal(t, http.StatusSeeOther, b.get("/").StatusCode, "logged out")
}

func TestSessionsBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxSessions = 2 })
	first := e.client().login(bob)
	e.clock.Advance(time.Second)
	e.client().login(carol)
	e.clock.Advance(time.Second)
	e.client().login(admin)
	assert.Equal(t, 2, e.ui.sessions.len())
	assert.Equal(t, http.StatusSeeOther, first.get("/").StatusCode, "the least recently used session went")
}

// Subject, body, display name and attachment name with script tags render
// as text; the page has no script of its own.
func TestXSS(t *testing.T) {
	e := newEnv(t, nil)
	msg := "From: \"<script>window.__xss=1</script>\" <x@example.net>\r\n" +
		"Subject: <script>window.__xss=1</script><img src=x onerror=alert(1)>\r\n" +
		"X-Evil: \"><svg onload=alert(1)>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nHello <script>window.__xss=1</script> </pre><b>bold</b>\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<html><body><script>window.__xss=1</script><p onclick=alert(1)>hi</p></body></html>\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"<script>x.exe\"\r\n\r\nAAAA\r\n" +
		"--b--\r\n"
	id := e.enqueue("spam score <b>99</b>", msg, bob)
	b := e.client().login(bob)
	for _, path := range []string{"/", "/msg/" + id} {
		r := b.get(path)
		require.Equal(t, http.StatusOK, r.StatusCode)
		low := strings.ToLower(r.body)
		assert.NotContains(t, low, "<script", path)
		assert.NotContains(t, low, "<img", path)
		assert.NotContains(t, low, "<svg onload", path)
		assert.NotContains(t, low, "<b>", path)
		assert.Contains(t, r.body, "&lt;script&gt;window.__xss=1&lt;/script&gt;", path)
		assert.Contains(t, r.body, "spam score &lt;b&gt;99&lt;/b&gt;", path)
	}
	page := b.get("/msg/" + id).body
	assert.Contains(t, page, "Hello &lt;script&gt;")
	assert.Contains(t, page, "&lt;/pre&gt;&lt;b&gt;bold&lt;/b&gt;")
	assert.Contains(t, page, "&lt;script&gt;x.exe")
	assert.NotContains(t, page, "onclick", "the HTML part is not shown at all when there is text")
}

func TestMessagePage(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxView = 4096 })
	htmlOnly := e.enqueue("spam", "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"+
		"<html><head><style>p{color:red}</style></head><body><p>Hello <b>there</b></p><script>x()</script></body></html>\r\n", bob)
	big := e.enqueue("spam", "Subject: big\r\n\r\n"+strings.Repeat("line of text\r\n", 1000), bob)
	b := e.client().login(bob)

	r := b.get("/msg/" + htmlOnly)
	require.Equal(t, http.StatusOK, r.StatusCode)
	assert.Contains(t, r.body, "Grüße", "encoded words are decoded")
	assert.Contains(t, r.body, "converted from HTML")
	assert.Regexp(t, `(?s)<pre class="body" id="body">Hello \*?there`, r.body)
	assert.NotContains(t, r.body, "x()")
	assert.NotContains(t, r.body, "color:red")

	r = b.get("/msg/" + big)
	assert.Contains(t, r.body, "only its beginning is shown")
	assert.Less(t, strings.Count(r.body, "line of text"), 400)
}

func TestViewBytes(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name, msg string
		text      string
		note      string
		attach    string
	}{
		{"plain", "Subject: hi\n\nhello\n", "hello\n", "", ""},
		{"attachment", "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nsee file\r\n" +
			"--x\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--x--\r\n", "see file", "", "a.pdf"},
		{"too deep for the walker", deepNesting(40), "bottom", "beyond what this page shows", ""},
		{"no body", "Subject: only a header\r\n", "", "", ""},
		{"control characters", "Subject: a\x00b\x1bc\r\n\r\nx\x00y\r\n", "x y", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := e.ui.viewBytes(context.Background(), []byte(tc.msg))
			assert.Contains(t, v.Text, tc.text)
			if tc.note != "" {
				require.NotEmpty(t, v.Notes)
				assert.Contains(t, strings.Join(v.Notes, " "), tc.note)
			}
			if tc.attach != "" {
				require.Len(t, v.Attachments, 1)
				assert.Equal(t, tc.attach, v.Attachments[0].Name)
				assert.Equal(t, 5, v.Attachments[0].Size)
			}
			for _, f := range v.Header {
				assert.NotContains(t, f.Value, "\x00")
				assert.NotContains(t, f.Value, "\x1b")
			}
		})
	}
}

func deepNesting(n int) string {
	var b strings.Builder
	b.WriteString("Subject: deep\r\n")
	for i := range n {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nbottom\r\n")
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

func TestParseHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []field
	}{
		{"simple", "From: a@example.net\r\nSubject: hi\r\n\r\nbody: not a field\r\n",
			[]field{{"From", "a@example.net"}, {"Subject", "hi"}}},
		{"folded", "Subject: one\r\n two\r\n\tthree\r\nTo: b\r\n\r\n",
			[]field{{"Subject", "one two\tthree"}, {"To", "b"}}},
		{"bare LF and mbox line", "From sender Mon Jan  1 00:00:00 2024\nSubject: x\n\n",
			[]field{{"Subject", "x"}}},
		{"encoded words", "Subject: =?ISO-8859-1?Q?Caf=E9?= =?UTF-8?B?w6k=?=\r\n\r\n",
			[]field{{"Subject", "Caféé"}}},
		{"bad name skipped", "Bad Name: x\r\n: empty\r\nOk: y\r\n\r\n", []field{{"Ok", "y"}}},
		{"continuation first", " stray\r\nA: b\r\n\r\n", []field{{"A", "b"}}},
		{"invalid UTF-8", "Subject: \xff\xfe ok\r\n\r\n", []field{{"Subject", "\uFFFD\uFFFD ok"}}},
		{"no end", "A: b", []field{{"A", "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, parseHeader([]byte(tc.in), maxFields))
		})
	}
	many := strings.Repeat("A: b\r\n", 3000)
	assert.Len(t, parseHeader([]byte(many), maxFields), maxFields)
	long := "A: " + strings.Repeat("x", 100<<10) + "\r\n"
	assert.Len(t, parseHeader([]byte(long), maxFields)[0].Value, maxFieldValue)
}

func TestAdminChart(t *testing.T) {
	days := func(_ context.Context, from, to time.Time) ([]Day, error) {
		var out []Day
		for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
			n := d.Day()
			out = append(out, Day{Date: d, Received: 100 + n, Delivered: 80 + n, Rejected: 15, Quarantined: n % 7,
				Viruses: n % 3, Spam: 20 + n%5})
		}
		return out, nil
	}
	e := newEnv(t, func(c *Config) { c.Days = days })
	a := e.client().login(admin)
	r := a.get("/admin")
	require.Equal(t, http.StatusOK, r.StatusCode)
	assert.Contains(t, r.body, "<svg")
	assert.Equal(t, 6, strings.Count(r.body, "<polyline"))
	assert.Equal(t, 14*6, strings.Count(r.body, "<circle"))
	assert.Contains(t, r.body, "<td>2026-11-25</td><td>125</td><td>105</td><td>15</td><td>4</td><td>1</td><td>20</td>")
	assert.Contains(t, r.body, "<td>2026-11-12</td>", "14 days, today included")
	assert.NotContains(t, r.body, "<td>2026-11-11</td>")

	e = newEnv(t, func(c *Config) {
		c.Days = func(context.Context, time.Time, time.Time) ([]Day, error) { return nil, errors.New("stats down") }
	})
	r = e.client().login(admin).get("/admin")
	assert.Contains(t, r.body, "could not be read")
	assert.Contains(t, e.logs.String(), "stats down")
}

func TestChartGolden(t *testing.T) {
	first := time.Date(2026, 11, 12, 0, 0, 0, 0, time.UTC)
	var days []Day
	for i := range 14 {
		if i == 5 {
			continue // a day without statistics counts as zero
		}
		days = append(days, Day{Date: first.AddDate(0, 0, i), Received: 40 + 3*i, Delivered: 30 + 2*i, Rejected: 8 + i%4,
			Quarantined: i % 5, Viruses: i % 2, Spam: 5 + i%6})
	}
	days = append(days, Day{Date: first.AddDate(0, 0, -1), Received: 9999}) // outside: ignored
	c := buildChart(days, first, 14, time.UTC)
	ui, err := New(Config{Queue: &fakeQueue{}, Authenticate: authenticate})
	require.NoError(t, err)
	var b strings.Builder
	require.NoError(t, ui.pages["admin"].ExecuteTemplate(&b, "chart", c))
	golden(t, "chart.svg", b.String())
	assert.Equal(t, []string{"0", "20", "40", "60", "80"}, func() []string {
		var l []string
		for _, tk := range c.YTicks {
			l = append(l, tk.Label)
		}
		return l
	}())
}

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct {
		raw  float64
		want int
	}{{0, 1}, {0.5, 1}, {1, 1}, {1.5, 2}, {3, 5}, {7, 10}, {12, 20}, {2500, 5000}, {99999, 100000}} {
		assert.Equal(t, tc.want, niceStep(tc.raw), "%v", tc.raw)
	}
}

// Owns decides: here bob also reads the sales mailbox, and carol owns
// nothing.
func TestOwnsDecides(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Owns = func(user, addr string) bool {
			return user == bob && (addr == bob || addr == "sales@example.test")
		}
	})
	sales := e.enqueue("spam", spam("Tender", "offer"), "sales@example.test", "info@example.test")
	b := e.client().login(bob)
	r := b.get("/msg/" + sales)
	require.Equal(t, http.StatusOK, r.StatusCode)
	assert.Contains(t, r.body, "Release to sales@example.test<")
	assert.NotContains(t, r.body, "info@example.test", "the other recipient is not bob's business")
	assert.NotContains(t, e.client().login(carol).get("/").body, "Tender")

	r = b.post("/msg/"+sales+"/delete", url.Values{"csrf": {b.csrf()}})
	require.Equal(t, http.StatusSeeOther, r.StatusCode)
	info, err := e.q.Show(sales)
	require.NoError(t, err, "info@ is still held in the original")
	assert.True(t, info.Held())
	assert.Equal(t, queue.Moved, info.State.Rcpts[0].Status)
	assert.Equal(t, queue.Pending, info.State.Rcpts[1].Status)
	total, _ := e.q.Len()
	assert.Equal(t, 1, total, "bob's copy was split off and deleted")

	long := e.client().tryLogin(strings.Repeat("x", 300), "pw", "")
	assert.Equal(t, http.StatusUnauthorized, long.StatusCode)
}

// unavailable is the error of a password check that could not be made.
type unavailable struct{}

func (unavailable) Error() string   { return "directory: unavailable" }
func (unavailable) Temporary() bool { return true }

// A login the directory cannot check is 503, and not a failed login: an
// outage locks nobody out.
func TestLoginUnavailable(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	e := newEnv(t, func(c *Config) {
		check := c.Authenticate
		c.Authenticate = func(ctx context.Context, user, password string) error {
			if down.Load() {
				return fmt.Errorf("check: %w", unavailable{})
			}
			return check(ctx, user, password)
		}
	})
	c := e.client()
	for range 7 {
		r := c.tryLogin(bob, passwords[bob], "")
		assert.Equal(t, http.StatusServiceUnavailable, r.StatusCode)
		assert.Contains(t, r.body, "cannot be checked right now")
	}
	down.Store(false)
	c.login(bob)
}
