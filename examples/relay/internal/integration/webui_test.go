package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/examples/relay/internal/webui"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/scan/scantest"
)

var webRE = regexp.MustCompile(`msg="quarantine page listening" addr=(\S+)`)

// sendSMTP submits one message to the relay on port 25 and returns its
// queue ID.
func sendSMTP(t *testing.T, addr, from string, to []string, msg string) string {
	t.Helper()
	c, err := smtp.Dial(addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Hello("client.example.net"))
	require.NoError(t, c.Mail(from, nil))
	for _, r := range to {
		require.NoError(t, c.Rcpt(r, nil))
	}
	w, err := c.Data()
	require.NoError(t, err)
	_, err = w.Write([]byte(msg))
	require.NoError(t, err)
	resp, err := w.CloseWithResponse()
	require.NoError(t, err)
	m := regexp.MustCompile(`queued as ([0-9A-Z]+)`).FindStringSubmatch(resp.StatusText)
	require.NotNil(t, m, resp.StatusText)
	require.NoError(t, c.Quit())
	return m[1]
}

// browser starts headless Chromium (as root it needs --no-sandbox) that
// accepts the test's self-signed certificate, and counts the JavaScript
// dialogs any page opens.
func browser(t *testing.T, bin string) (context.Context, func() int) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.IgnoreCertErrors, chromedp.WindowSize(1280, 900), chromedp.Flag("disable-gpu", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	dialogs := make(chan string, 16)
	events := chromedp.Events(ctx, page.JavascriptDialogOpening)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")), "starting %s", bin)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			dialogs <- ev.Message
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return ctx, func() int { return len(dialogs) }
}

// screenshot saves a PNG of the whole page in the test's directory and,
// when POSTERN_SCREENSHOTS names a directory, there too.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.True(t, len(png) > 8 && string(png[1:4]) == "PNG", "a PNG image")
	dirs := []string{t.TempDir()}
	if d := os.Getenv("POSTERN_SCREENSHOTS"); d != "" {
		require.NoError(t, os.MkdirAll(d, 0o755))
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		require.NoError(t, os.WriteFile(filepath.Join(d, name), png, 0o644))
	}
	t.Logf("screenshot %s (%d bytes)", name, len(png))
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(t, err)
	return s
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	require.NoError(t, err, js)
	return v
}

func browserLogin(t *testing.T, ctx context.Context, base, user, password string) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(base+"/"), // not logged in: to the login form
		chromedp.WaitVisible(chromedp.ID("user")),
		chromedp.SendKeys(chromedp.ID("user"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.CSS("header nav .who")),
	))
	require.Contains(t, text(t, ctx, "header nav .who"), user)
}

func browserLogout(t *testing.T, ctx context.Context) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("header nav button.link")),
		chromedp.WaitVisible(chromedp.ID("login")),
	))
}

// postForm submits a form the page did not make, with the CSRF token
// given (none when ""), and returns the error the browser lands on.
func postForm(t *testing.T, ctx context.Context, action, csrf string) string {
	t.Helper()
	js := fmt.Sprintf(`(() => {
		const f = document.createElement('form');
		f.method = 'post';
		f.action = %q;
		if (%q !== '') {
			const i = document.createElement('input');
			i.type = 'hidden'; i.name = 'csrf'; i.value = %q;
			f.appendChild(i);
		}
		document.body.appendChild(f);
		f.submit();
		return true;
	})()`, action, csrf, csrf)
	require.True(t, eval[bool](t, ctx, js))
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("p.error"))))
	return text(t, ctx, "p.error")
}

// The quarantine page in a real browser, in front of the real relay with a
// real spamd: a message caught as spam is listed for its recipient,
// released, and arrives downstream for that recipient only; another user
// sees neither the first user's copy nor the message held only for them,
// and cannot release it; a POST without the CSRF token is refused; a
// message with script in its Subject and body renders inertly. Screenshots
// of the list and of the admin page go to $POSTERN_SCREENSHOTS.
func TestQuarantinePageInChromium(t *testing.T) {
	chromium := need(t, "chromium")
	spamd := scantest.Spamd(t)
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	users := map[string]string{"bob@example.test": "bob's secret", "carol@example.test": "carol's secret",
		"postmaster": "admin secret"}
	var creds strings.Builder
	for u, p := range users {
		h, err := auth.HashPassword(auth.HashBcrypt, p)
		require.NoError(t, err)
		creds.WriteString(u + ":" + h + "\n")
	}
	credsFile := writeFile(t, dir, "credentials", creds.String())
	down := startSink(t, "127.0.0.1:0")
	mt := writeFile(t, dir, "mailertable", "example.test smtp:"+hostPort(down.addr)+"\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-mailertable", mt,
		"-spamd", spamd.Addr, "-spam-reject-score", "5", "-spam-action", "quarantine",
		"-tls-cert", cert, "-tls-key", key, "-credentials", credsFile,
		"-web-listen", "127.0.0.1:0", "-web-admins", "postmaster")
	m := webRE.FindStringSubmatch(r.logs())
	require.NotNil(t, m, r.logs())
	base := "https://" + m[1]

	watches := sendSMTP(t, r.addr, "spammer@example.net", []string{"bob@example.test", "carol@example.test"},
		"From: Watch Shop <spammer@example.net>\r\nTo: bob@example.test, carol@example.test\r\n"+
			"Subject: Cheap watches\r\nMessage-ID: <watches@example.net>\r\n\r\n"+
			"Genuine replicas, today only.\r\n"+scantest.GTUBE()+"\r\n")
	xss := sendSMTP(t, r.addr, "spammer@example.net", []string{"bob@example.test"},
		"From: \"<script>window.__xss=3</script>\" <spammer@example.net>\r\nTo: bob@example.test\r\n"+
			"Subject: <script>window.__xss=1</script><img src=x onerror=alert(1)>Win big\r\n"+
			"Message-ID: <xss@example.net>\r\nMIME-Version: 1.0\r\n"+
			"Content-Type: multipart/alternative; boundary=b\r\n\r\n"+
			"--b\r\nContent-Type: text/plain\r\n\r\nHello <script>window.__xss=2</script><img src=x onerror=alert(2)>\r\n"+
			scantest.GTUBE()+"\r\n"+
			"--b\r\nContent-Type: text/html\r\n\r\n<html><body><script>window.__xss=4;alert(4)</script>"+
			"<img src=x onerror=alert(5)><p>Hello</p></body></html>\r\n--b--\r\n")
	for _, id := range []string{watches, xss} {
		assert.Regexp(t, `msg=queued queue_id=`+id+` .*hold="scan: spamd: score`, r.logs(), "held, not delivered")
	}

	ctx, dialogs := browser(t, chromium)

	// bob sees both his held messages; the one with script renders as text.
	browserLogin(t, ctx, base, "bob@example.test", users["bob@example.test"])
	list := text(t, ctx, "main")
	assert.Contains(t, list, "Cheap watches")
	assert.Contains(t, list, "<script>window.__xss=1</script><img src=x onerror=alert(1)>Win big",
		"the Subject is shown as the text it is")
	screenshot(t, ctx, "quarantine-list.png")

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"/msg/"+xss), chromedp.WaitVisible(chromedp.ID("body"))))
	assert.Contains(t, text(t, ctx, "#body"), "Hello <script>window.__xss=2</script><img src=x onerror=alert(2)>")
	assert.Contains(t, text(t, ctx, "h1.subject"), "<script>window.__xss=1</script>")
	html := eval[string](t, ctx, `document.documentElement.outerHTML`)
	assert.NotContains(t, strings.ToLower(html), "<script", "no script element in the page")
	assert.NotContains(t, strings.ToLower(html), "<img", "no image element in the page")
	assert.Equal(t, 0, eval[int](t, ctx, `document.scripts.length + document.images.length`))
	assert.Equal(t, "undefined", eval[string](t, ctx, `typeof window.__xss`), "no script of the message ran")
	screenshot(t, ctx, "quarantine-message.png")

	// A POST without the CSRF token is refused.
	refused := postForm(t, ctx, "/msg/"+xss+"/release", "")
	assert.Contains(t, refused, "form token is missing or wrong")

	// bob releases his copy of the watches: it arrives at the sink for him
	// alone.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(base+"/msg/"+watches),
		chromedp.WaitVisible(chromedp.ID("release")),
		chromedp.Click(chromedp.ID("release")),
		chromedp.WaitVisible(chromedp.CSS("p.flash")),
	))
	assert.Contains(t, text(t, ctx, "p.flash"), "Released your copy of message "+watches+" for bob@example.test")
	got := down.waitFor(t, 1, 30*time.Second)
	assert.Equal(t, []string{"bob@example.test"}, got[0].Rcpts)
	assert.Equal(t, "<watches@example.net>", got[0].MessageID())
	list = text(t, ctx, "main")
	assert.NotContains(t, list, "Cheap watches", "no longer held for bob")
	assert.Contains(t, list, "Win big")
	browserLogout(t, ctx)

	// carol still has her copy of the watches, and nothing of bob's.
	browserLogin(t, ctx, base, "carol@example.test", users["carol@example.test"])
	list = text(t, ctx, "main")
	assert.Contains(t, list, "Cheap watches")
	assert.NotContains(t, list, "Win big")
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"/msg/"+xss), chromedp.WaitVisible(chromedp.CSS("p.error"))))
	assert.Contains(t, text(t, ctx, "p.error"), "There is no such message")
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("table.list"))))
	token := eval[string](t, ctx, `document.querySelector('input[name=csrf]').value`)
	require.NotEmpty(t, token)
	assert.Contains(t, postForm(t, ctx, "/msg/"+xss+"/release", token), "There is no such message",
		"with her own valid token, carol still cannot release bob's message")
	assert.Contains(t, postForm(t, ctx, "/msg/"+xss+"/delete", token), "There is no such message")
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("table.list"))))
	browserLogout(t, ctx)

	// The admin sees both held messages and the relay's status.
	browserLogin(t, ctx, base, "postmaster", users["postmaster"])
	list = text(t, ctx, "main")
	assert.Contains(t, list, "Cheap watches")
	assert.Contains(t, list, "Win big")
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"/admin"), chromedp.WaitVisible(chromedp.ID("held"))))
	assert.Equal(t, "2", text(t, ctx, "#held"), "carol's copy and bob's other message")
	screenshot(t, ctx, "quarantine-admin.png")

	assert.Zero(t, dialogs(), "no alert opened on any page")
	assert.Len(t, down.received(), 1, "nothing else was delivered")
	logs := r.logs()
	assert.Regexp(t, `msg="quarantine page" user=bob@example.test action=release remote_ip=127.0.0.1 .*queue_id=`+watches, logs)
	assert.Regexp(t, `msg="quarantine page" user=bob@example.test action=csrf-refused remote_ip=127.0.0.1 .*queue_id=`+xss, logs)
	assert.Regexp(t, `msg="quarantine page" user=carol@example.test action=not-found remote_ip=127.0.0.1 .*queue_id=`+xss, logs)

	t.Run("chart", func(t *testing.T) { chartInChromium(t, ctx) })
}

// The admin chart with statistics (the relay's are wired separately): the
// page as the admin sees it, from an in-process page on a queue of its
// own, in the same browser.
func chartInChromium(t *testing.T, ctx context.Context) {
	q, err := queue.Open(queue.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	defer q.Close()
	days := func(_ context.Context, from, to time.Time) ([]webui.Day, error) {
		var out []webui.Day
		for d, i := from, 0; d.Before(to); d, i = d.AddDate(0, 0, 1), i+1 {
			out = append(out, webui.Day{Date: d, Received: 420 + 37*(i%5) + 9*i, Delivered: 300 + 31*(i%4) + 7*i,
				Rejected: 80 + 13*(i%3), Quarantined: 12 + 5*(i%4), Viruses: i % 3, Spam: 95 + 11*(i%6)})
		}
		return out, nil
	}
	ui, err := webui.New(webui.Config{Queue: q, Admins: []string{"postmaster"}, Days: days,
		Authenticate: func(_ context.Context, user, password string) error {
			if user == "postmaster" && password == "chart" {
				return nil
			}
			return errors.New("no")
		}})
	require.NoError(t, err)
	ts := httptest.NewTLSServer(ui)
	defer ts.Close()
	browserLogin(t, ctx, ts.URL, "postmaster", "chart")
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(ts.URL+"/admin"), chromedp.WaitVisible(chromedp.CSS("svg.chart"))))
	assert.Equal(t, 6, eval[int](t, ctx, `document.querySelectorAll('svg.chart polyline').length`))
	assert.Equal(t, 84, eval[int](t, ctx, `document.querySelectorAll('svg.chart circle').length`))
	screenshot(t, ctx, "quarantine-chart.png")
}
