package webui

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/queue"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create %s", path)
	require.Equal(t, string(want), got)
}

// The users of the tests; their names are their addresses.
const (
	bob   = "bob@example.test"
	carol = "carol@example.test"
	admin = "postmaster"
)

var passwords = map[string]string{bob: "bob's password", carol: "carol's password", admin: "admin password"}

func authenticate(_ context.Context, user, password string) error {
	if p, ok := passwords[user]; ok && p == password {
		return nil
	}
	return errors.New("bad credentials")
}

// env is a page on a real queue (in a temporary directory) served over
// TLS by httptest.
type env struct {
	t     testing.TB
	q     *queue.Queue
	ui    *Server
	ts    *httptest.Server
	clock *testutil.Clock
	logs  *testutil.LogBuffer
}

func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, clock: testutil.NewClock(), logs: &testutil.LogBuffer{}}
	var ids atomic.Int64
	q, err := queue.Open(queue.Config{Dir: t.TempDir(), Hostname: "relay.example.test", Clock: e.clock.Now,
		NewID: func() string { return fmt.Sprintf("Q%04d", ids.Add(1)) }})
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	e.q = q
	cfg := Config{Queue: q, Authenticate: authenticate, Admins: []string{admin}, Logger: e.logs.Logger(),
		Clock: e.clock.Now, Location: time.UTC}
	if mod != nil {
		mod(&cfg)
	}
	e.ui, err = New(cfg)
	require.NoError(t, err)
	e.ts = httptest.NewTLSServer(e.ui)
	t.Cleanup(e.ts.Close)
	return e
}

// enqueue queues a message for rcpts, held with reason unless it is "".
func (e *env) enqueue(reason, msg string, rcpts ...string) string {
	e.t.Helper()
	env := queue.Envelope{From: "sender@example.net", Hold: reason}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, queue.Recipient{Addr: r, Original: r})
	}
	id, err := e.q.Enqueue(context.Background(), env, strings.NewReader(msg))
	require.NoError(e.t, err)
	e.clock.Advance(time.Minute) // distinct arrival times: a stable order
	return id
}

func spam(subject, body string) string {
	return "From: Spammer <spammer@example.net>\r\nTo: undisclosed-recipients:;\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.net>\r\n\r\n" + body + "\r\n"
}

// client is one browser: its own cookies, redirects not followed.
type client struct {
	e *env
	c *http.Client
}

func (e *env) client() *client {
	jar, err := cookiejar.New(nil)
	require.NoError(e.t, err)
	c := new(http.Client)
	*c = *e.ts.Client() // its transport trusts the test certificate
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &client{e: e, c: c}
}

type response struct {
	*http.Response
	body string
}

func (c *client) do(req *http.Request) response {
	c.e.t.Helper()
	resp, err := c.c.Do(req)
	require.NoError(c.e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.e.t, err)
	return response{resp, string(b)}
}

func (c *client) get(path string) response {
	c.e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.e.ts.URL+path, nil)
	require.NoError(c.e.t, err)
	return c.do(req)
}

func (c *client) post(path string, form url.Values, hdr ...string) response {
	c.e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.e.ts.URL+path, strings.NewReader(form.Encode()))
	require.NoError(c.e.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return c.do(req)
}

var (
	loginTokenRE = regexp.MustCompile(`name="login_token" value="([^"]+)"`)
	csrfRE       = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

func find(t testing.TB, re *regexp.Regexp, s string) string {
	t.Helper()
	m := re.FindStringSubmatch(s)
	require.NotNil(t, m, "%s not found in:\n%s", re, s)
	return m[1]
}

// tryLogin fills in the login form.
func (c *client) tryLogin(user, password, next string) response {
	c.e.t.Helper()
	form := c.get("/login?next=" + url.QueryEscape(next))
	tok := find(c.e.t, loginTokenRE, form.body)
	return c.post("/login", url.Values{"login_token": {tok}, "user": {user}, "password": {password},
		"next": {find(c.e.t, regexp.MustCompile(`name="next" value="([^"]*)"`), form.body)}})
}

func (c *client) login(user string) *client {
	c.e.t.Helper()
	r := c.tryLogin(user, passwords[user], "")
	require.Equal(c.e.t, http.StatusSeeOther, r.StatusCode, r.body)
	require.Equal(c.e.t, "/", r.Header.Get("Location"))
	return c
}

// csrf is the session's form token, read from the list page.
func (c *client) csrf() string {
	c.e.t.Helper()
	return find(c.e.t, csrfRE, c.get("/").body)
}

func (e *env) held(id string) bool {
	e.t.Helper()
	info, err := e.q.Show(id)
	return err == nil && info.Held()
}
