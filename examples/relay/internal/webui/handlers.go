package webui

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/queue"
)

// maxForm bounds a POST body: the forms have a few short fields.
const maxForm = 64 << 10

// Bounds of what a login form may bring; longer is a wrong login.
const (
	maxUser     = 256
	maxPassword = 1024
)

// page is what every template gets.
type page struct {
	Title string
	User  string
	Admin bool
	CSRF  string
	Flash string
	Error string

	// The login form.
	LoginToken string
	Next       string
	LoginUser  string

	// The list.
	Items []listItem
	More  int

	// One message.
	Msg *msgPage

	// The admin page.
	Status    *queueStatus
	Chart     *chart
	ChartNote string
}

// listItem is one held message in the list.
type listItem struct {
	ID       string
	Received time.Time
	EnvFrom  string
	From     string
	Subject  string
	Reason   string
	Size     int64
	Rcpts    []string
	Active   bool
}

// msgPage is one message shown.
type msgPage struct {
	listItem
	View *messageView
}

type queueStatus struct {
	Total, Held int
	Oldest      time.Time
	Age         time.Duration
	Sessions    int
}

var pageNames = []string{"login", "list", "message", "admin", "error"}

func parsePages(loc *time.Location) (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.In(loc).Format("2006-01-02 15:04 MST")
		},
		"size": humanSize,
		"age":  humanAge,
		"join": func(s []string) string { return strings.Join(s, ", ") },
	}
	base, err := template.New("").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/chart.html")
	if err != nil {
		return nil, fmt.Errorf("webui: templates: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := base.Clone()
		if err == nil {
			t, err = t.ParseFS(assets, "templates/"+name+".html")
		}
		if err != nil {
			return nil, fmt.Errorf("webui: templates: %w", err)
		}
		pages[name] = t
	}
	return pages, nil
}

func humanSize(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}

func humanAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "under a minute"
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h", int(d/time.Hour))
	default:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
}

// render executes a page into a buffer first, so a template error never
// sends half a page.
func (s *Server) render(w http.ResponseWriter, status int, name string, p *page) {
	p.Title = s.cfg.Title
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.Error("quarantine page: template failed", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail shows an error page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess *session, status int, msg string) {
	p := &page{Error: msg}
	if sess != nil {
		p.User, p.Admin, p.CSRF = sess.user, sess.admin, sess.csrf
	}
	s.render(w, status, "error", p)
}

// nextRE is where a login may send the user on: a page of this site, by
// path only. Anything else (another host, "//host", "/\host", a scheme)
// goes to the list: no open redirect.
var nextRE = regexp.MustCompile(`^/(msg/[A-Za-z0-9_-]{1,64}|admin)?$`)

func safeNext(next string) string {
	if nextRE.MatchString(next) {
		return next
	}
	return "/"
}

// withSession runs h for a logged-in user; others are sent to the login
// form. For state-changing requests (post) the form's CSRF token must
// match the session's.
func (s *Server) withSession(post bool, h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.session(r)
		if !ok {
			if post {
				s.logAction(r, "", "refused", "", "reason", "no session", "path", r.URL.Path)
				s.fail(w, r, nil, http.StatusForbidden, "Your session has ended. Please log in again.")
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(safeNext(r.URL.Path)), http.StatusSeeOther)
			return
		}
		if post {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil || !equalToken(r.PostForm.Get("csrf"), sess.csrf) {
				s.logAction(r, sess.user, "csrf-refused", r.PathValue("id"), "path", r.URL.Path)
				s.fail(w, r, &sess, http.StatusForbidden, "The request was refused: its form token is missing or wrong. Reload the page and try again.")
				return
			}
		}
		h(w, r, &sess)
	}
}

// session returns the request's session, if it has a live one whose
// user may still log in with the credentials they logged in with
// (Config.Credential): a user removed from the credentials file, or whose
// password changed, loses every session at once.
func (s *Server) session(r *http.Request) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	sess, ok := s.sessions.get(c.Value)
	if !ok || s.cfg.Credential == nil {
		return sess, ok
	}
	if v, ok := s.cfg.Credential(sess.user); ok && v == sess.cred {
		return sess, true
	}
	s.sessions.delete(sess.key)
	s.logAction(r, sess.user, "session-revoked", "", "reason", "credentials changed or removed")
	return session{}, false
}

// credential is Config.Credential, or ("", true) without one.
func (s *Server) credential(user string) (string, bool) {
	if s.cfg.Credential == nil {
		return "", true
	}
	return s.cfg.Credential(user)
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.session(r); ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.showLogin(w, r, http.StatusOK, "", "")
}

// showLogin renders the login form with a fresh login token, which is
// also set as a cookie: the POST must bring both (double submit), so
// another site cannot log a victim in as the attacker.
func (s *Server) showLogin(w http.ResponseWriter, r *http.Request, status int, user, msg string) {
	tok, err := token(s.cfg.Rand)
	if err != nil {
		s.log.Error("quarantine page: no randomness", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	setCookie(w, loginCookie, tok, 3600, http.SameSiteStrictMode)
	next := r.FormValue("next")
	s.render(w, status, "login", &page{LoginToken: tok, Next: safeNext(next), LoginUser: user, Error: msg})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return
	}
	user := strings.TrimSpace(r.PostForm.Get("user"))
	password := r.PostForm.Get("password")
	c, err := r.Cookie(loginCookie)
	if err != nil || !equalToken(r.PostForm.Get("login_token"), c.Value) {
		s.logAction(r, user, "csrf-refused", "", "path", r.URL.Path)
		s.showLogin(w, r, http.StatusForbidden, user, "The login form had expired. Please try again.")
		return
	}
	ctx := r.Context()
	keys := s.cfg.LoginKeys(remoteIP(r), user)
	if v, left := s.limiter.Check(ctx, keys...); v.Action != postern.Continue {
		// The same answer whether or not the account exists (RFC 6585
		// §4: 429 with Retry-After).
		s.logAction(r, user, "login-blocked", "", "reason", v.Reason)
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter(left)))
		s.showLogin(w, r, http.StatusTooManyRequests, user, "Too many failed logins. Please try again later.")
		return
	}
	if user == "" || password == "" || len(user) > maxUser || len(password) > maxPassword {
		s.showLogin(w, r, http.StatusUnauthorized, user, "Please give your user name and password.")
		return
	}
	select {
	case s.logins <- struct{}{}:
	case <-ctx.Done():
		return
	}
	cred, ok := s.credential(user)
	err = s.cfg.Authenticate(ctx, user, password)
	<-s.logins
	if temporary(err) {
		// The password could not be checked (the directory is down): not
		// a failed login.
		s.logAction(r, user, "login-unavailable", "", "error", err.Error())
		w.Header().Set("Retry-After", "60")
		s.showLogin(w, r, http.StatusServiceUnavailable, user, "Logins cannot be checked right now. Please try again in a minute.")
		return
	}
	if err != nil {
		if lerr := s.limiter.RecordAuthFailure(ctx, keys...); lerr != nil {
			s.log.Warn("quarantine page: could not count a failed login", "error", lerr)
		}
		s.logAction(r, user, "login-failed", "")
		s.showLogin(w, r, http.StatusUnauthorized, user, "Wrong user name or password.")
		return
	}
	// The version after the check must be the one before it: a password
	// changed meanwhile may not have been the one checked.
	if cred2, ok2 := s.credential(user); !ok || !ok2 || cred2 != cred {
		s.logAction(r, user, "login-failed", "", "reason", "credentials changed during the login")
		s.showLogin(w, r, http.StatusUnauthorized, user, "Wrong user name or password.")
		return
	}
	cookie, _, err := s.sessions.create(user, cred, s.isAdmin(user))
	if err != nil {
		s.log.Error("quarantine page: no randomness", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	setCookie(w, sessionCookie, cookie, 0, http.SameSiteLaxMode)
	setCookie(w, loginCookie, "", -1, http.SameSiteStrictMode)
	s.logAction(r, user, "login", "", "admin", s.isAdmin(user))
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

// temporary reports an error that says it is temporary (a directory
// that could not answer), as smtpserver reads a PasswordChecker's.
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// retryAfter is a Retry-After in whole seconds, at least one; a minute
// when the limiter could not say (its store failed).
func retryAfter(left time.Duration) int {
	if left <= 0 {
		return 60
	}
	return int((left + time.Second - 1) / time.Second)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	s.sessions.delete(sess.key)
	setCookie(w, sessionCookie, "", -1, http.SameSiteLaxMode)
	s.logAction(r, sess.user, "logout", "")
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// mine returns the recipients of a held message that the user may act
// on: those still pending that they own, or all pending ones for an
// admin. Empty: the message is not theirs to see.
func (s *Server) mine(info *queue.Info, sess *session) []string {
	if !info.Held() {
		return nil
	}
	var out []string
	for i, r := range info.Envelope.Recipients {
		if i >= len(info.State.Rcpts) || info.State.Rcpts[i].Status != queue.Pending || slices.Contains(out, r.Addr) {
			continue
		}
		if sess.admin || s.cfg.Owns(sess.user, r.Addr) {
			out = append(out, r.Addr)
		}
	}
	return out
}

func (s *Server) item(info *queue.Info, rcpts []string) listItem {
	sum := s.summary(info.ID)
	return listItem{ID: info.ID, Received: info.Envelope.Received, EnvFrom: info.Envelope.From, From: sum.From,
		Subject: sum.Subject, Reason: info.State.Hold, Size: info.Size, Rcpts: rcpts, Active: info.Active}
}

func (s *Server) basePage(sess *session) *page {
	return &page{User: sess.user, Admin: sess.admin, CSRF: sess.csrf, Flash: s.sessions.takeFlash(sess.key)}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, sess *session) {
	p := s.basePage(sess)
	held := s.cfg.Queue.List(queue.ListFilter{Held: "only"})
	for i := len(held) - 1; i >= 0; i-- { // newest first
		rcpts := s.mine(&held[i], sess)
		if len(rcpts) == 0 {
			continue
		}
		if len(p.Items) == s.cfg.MaxList {
			p.More++
			continue
		}
		p.Items = append(p.Items, s.item(&held[i], rcpts))
	}
	s.render(w, http.StatusOK, "list", p)
}

// visible returns a held message the user may see, with their
// recipients, or answers 404: whether a message exists that is not
// theirs is none of their business.
func (s *Server) visible(w http.ResponseWriter, r *http.Request, sess *session) (queue.Info, []string, bool) {
	id := r.PathValue("id")
	if idRE.MatchString(id) {
		info, err := s.cfg.Queue.Show(id)
		if err == nil {
			if rcpts := s.mine(&info, sess); len(rcpts) > 0 {
				return info, rcpts, true
			}
		}
	}
	s.logAction(r, sess.user, "not-found", idOrEmpty(id), "path", r.URL.Path)
	s.fail(w, r, sess, http.StatusNotFound, "There is no such message in your quarantine (it may have been released or deleted).")
	return queue.Info{}, nil, false
}

// idOrEmpty keeps a garbage ID out of the log keys.
func idOrEmpty(id string) string {
	if idRE.MatchString(id) {
		return id
	}
	return ""
}

func (s *Server) message(w http.ResponseWriter, r *http.Request, sess *session) {
	info, rcpts, ok := s.visible(w, r, sess)
	if !ok {
		return
	}
	p := s.basePage(sess)
	p.Msg = &msgPage{listItem: s.item(&info, rcpts), View: s.viewMessage(r.Context(), info.ID)}
	s.logAction(r, sess.user, "view", info.ID)
	s.render(w, http.StatusOK, "message", p)
}

type action int

const (
	actRelease action = iota
	actDelete
)

// act releases or deletes a held message for the user's recipients. The
// recipients of other users stay held: when the user owns only some,
// their recipients are split off into a message of their own first.
func (s *Server) act(a action) func(http.ResponseWriter, *http.Request, *session) {
	name, done := "release", "Released"
	if a == actDelete {
		name, done = "delete", "Deleted"
	}
	return func(w http.ResponseWriter, r *http.Request, sess *session) {
		info, rcpts, ok := s.visible(w, r, sess)
		if !ok {
			return
		}
		target, err := info.ID, error(nil)
		if !sess.admin {
			target, err = s.cfg.Queue.Split(info.ID, rcpts)
		}
		if err == nil {
			if a == actRelease {
				err = s.cfg.Queue.Release(target)
			} else {
				err = s.cfg.Queue.Delete(target)
			}
		}
		args := []any{"rcpts", rcpts}
		if target != info.ID {
			args = append(args, "new_id", target)
		}
		switch {
		case err == nil:
			s.logAction(r, sess.user, name, info.ID, args...)
			what := "message " + info.ID
			if target != info.ID {
				what = "your copy of message " + info.ID
			}
			s.sessions.setFlash(sess.key, fmt.Sprintf("%s %s for %s.", done, what, strings.Join(rcpts, ", ")))
			http.Redirect(w, r, "/", http.StatusSeeOther)
		case errors.Is(err, queue.ErrBusy):
			s.logAction(r, sess.user, name+"-failed", info.ID, append(args, "error", err.Error())...)
			s.fail(w, r, sess, http.StatusConflict, "The message is busy right now. Please try again in a moment.")
		case errors.Is(err, queue.ErrNotFound), errors.Is(err, queue.ErrNoRecipient):
			s.logAction(r, sess.user, name+"-failed", info.ID, append(args, "error", err.Error())...)
			s.fail(w, r, sess, http.StatusNotFound, "The message is gone (released or deleted meanwhile).")
		default:
			s.log.Error("quarantine page: action failed", "user", sess.user, "action", name, "queue_id", info.ID,
				"remote_ip", remoteIP(r).String(), "error", err)
			s.fail(w, r, sess, http.StatusInternalServerError, "The queue could not do that; the administrator will find the reason in the log.")
		}
	}
}

func (s *Server) admin(w http.ResponseWriter, r *http.Request, sess *session) {
	if !sess.admin {
		s.logAction(r, sess.user, "not-found", "", "path", r.URL.Path)
		s.fail(w, r, sess, http.StatusNotFound, "There is no such page.")
		return
	}
	p := s.basePage(sess)
	st := &queueStatus{Oldest: s.cfg.Queue.Oldest(), Sessions: s.sessions.len()}
	st.Total, st.Held = s.cfg.Queue.Len()
	if !st.Oldest.IsZero() {
		st.Age = s.cfg.Clock().Sub(st.Oldest)
	}
	p.Status = st
	p.Chart, p.ChartNote = s.chart(r.Context())
	s.logAction(r, sess.user, "admin", "")
	s.render(w, http.StatusOK, "admin", p)
}
