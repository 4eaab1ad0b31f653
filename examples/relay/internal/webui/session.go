package webui

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"io"
	"net/http"
	"sync"
	"time"
)

// Cookie names. The __Host- prefix makes browsers insist on Secure, Path=/
// and no Domain: no other host, not even a subdomain, can set them.
const (
	sessionCookie = "__Host-postern-session"
	loginCookie   = "__Host-postern-login"
)

// session is one logged-in user. Values are copied out of the store, so a
// handler never shares one with another request.
type session struct {
	key   [32]byte // hash of the cookie value: the map key
	user  string
	cred  string // Config.Credential's version at login
	admin bool
	csrf  string
	flash string
	start time.Time
	seen  time.Time
}

// sessions holds sessions in memory: a restart logs everyone out, which
// is fine for a page used now and then.
type sessions struct {
	now       func() time.Time
	rand      io.Reader
	idle, max time.Duration
	limit     int

	mu sync.Mutex
	m  map[[32]byte]*session
}

func newSessions(now func() time.Time, rand io.Reader, idle, max time.Duration, limit int) *sessions {
	return &sessions{now: now, rand: rand, idle: idle, max: max, limit: limit, m: map[[32]byte]*session{}}
}

// token returns 32 random bytes, base64url.
func token(r io.Reader) (string, error) {
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func keyOf(cookie string) [32]byte { return sha256.Sum256([]byte(cookie)) }

// create starts a session and returns its cookie value. A new value at
// every login: a session ID planted before the login is worth nothing.
func (ss *sessions) create(user, cred string, admin bool) (cookie string, s session, err error) {
	if cookie, err = token(ss.rand); err != nil {
		return "", s, err
	}
	csrf, err := token(ss.rand)
	if err != nil {
		return "", s, err
	}
	now := ss.now()
	s = session{key: keyOf(cookie), user: user, cred: cred, admin: admin, csrf: csrf, start: now, seen: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= ss.limit {
		ss.evict(now)
	}
	c := s
	ss.m[s.key] = &c
	return cookie, s, nil
}

// evict drops expired sessions, and the least recently used one if that
// is not enough. Called with mu held, only when the store is full.
func (ss *sessions) evict(now time.Time) {
	var oldest *session
	for k, s := range ss.m {
		if ss.expired(s, now) {
			delete(ss.m, k)
			continue
		}
		if oldest == nil || s.seen.Before(oldest.seen) {
			oldest = s
		}
	}
	if len(ss.m) >= ss.limit && oldest != nil {
		delete(ss.m, oldest.key)
	}
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	return now.Sub(s.seen) >= ss.idle || now.Sub(s.start) >= ss.max
}

// get returns the session of a cookie value and marks it used.
func (ss *sessions) get(cookie string) (session, bool) {
	if cookie == "" {
		return session{}, false
	}
	k := keyOf(cookie)
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[k]
	if s == nil {
		return session{}, false
	}
	if ss.expired(s, now) {
		delete(ss.m, k)
		return session{}, false
	}
	s.seen = now
	return *s, true
}

// takeFlash returns the session's one-time notice and clears it.
func (ss *sessions) takeFlash(key [32]byte) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[key]
	if s == nil {
		return ""
	}
	f := s.flash
	s.flash = ""
	return f
}

func (ss *sessions) setFlash(key [32]byte, msg string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s := ss.m[key]; s != nil {
		s.flash = msg
	}
}

func (ss *sessions) delete(key [32]byte) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, key)
}

func (ss *sessions) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

// equalToken compares a submitted token with the expected one in constant
// time; an empty one never matches.
func equalToken(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// setCookie sets one of the page's cookies: Secure (the page is HTTPS
// only), HttpOnly (no script may read it; there are no scripts anyway),
// SameSite. maxAge < 0 deletes it.
func setCookie(w http.ResponseWriter, name, value string, maxAge int, same http.SameSite) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: same})
}
