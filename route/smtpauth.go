package route

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/postern/postern"
)

// AuthSource gives the credentials for a server: *AuthTable implements
// it. named says the configuration chose the server (mailertable, smart
// host, fallback relay), not the DNS of a recipient's domain.
type AuthSource interface {
	Lookup(host string, addr netip.Addr, named bool) (Credentials, bool)
}

// defaultMechanisms are tried when an entry names none: PLAIN first
// (RFC 4616), LOGIN for servers that know no other.
var defaultMechanisms = []string{"PLAIN", "LOGIN"}

// saslClient returns the client of the first mechanism of c the server
// offers.
func saslClient(c Credentials, offered string) (string, sasl.Client) {
	have := strings.Fields(strings.ToUpper(offered))
	want := c.Mechanisms
	if len(want) == 0 {
		want = defaultMechanisms
	}
	for _, m := range want {
		if !slices.Contains(have, m) {
			continue
		}
		switch m {
		case "PLAIN":
			authz := c.authz()
			if authz == c.authc() {
				authz = "" // RFC 4616 §2: empty means "the same"; some servers refuse it spelled out
			}
			return m, sasl.NewPlainClient(authz, c.authc(), c.Password)
		case "LOGIN":
			return m, sasl.NewLoginClient(c.authc(), c.Password)
		case "XOAUTH2":
			return m, &xoauth2{user: c.authc(), token: c.Password}
		}
	}
	return "", nil
}

// xoauth2 is Google's and Microsoft's XOAUTH2 mechanism: the user and an
// OAuth 2.0 bearer token in one initial response.
type xoauth2 struct{ user, token string }

func (x *xoauth2) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

// Next answers the server's error challenge (a JSON status) with an
// empty line, after which the server sends its final reply.
func (x *xoauth2) Next([]byte) ([]byte, error) { return []byte{}, nil }

// login says AUTH on s with the credentials the plan carries, when
// there are any. A failure is temporary, with the server's reply: the
// message is never sent without the login instead (the smart host would
// refuse to relay it, or accept it as someone else's).
func (t *Transport) login(ctx context.Context, s *session, p *tlsPlan) *sessFail {
	if p.auth == nil {
		return nil
	}
	cred, name := *p.auth, s.target.String()
	fail := func(text string, remote bool) *sessFail {
		s.broken = true
		t.closeSession(s)
		return &sessFail{reply: postern.NewReply(451, postern.ESC(4, 7, 8), text), remote: remote, next: true}
	}
	if s.tls == nil && !t.authPlain && s.target.Socket == "" {
		if !cred.Required {
			return nil
		}
		return fail("credentials for "+name+" are not sent without TLS, and the session has none", false)
	}
	ok, offered := s.c.Extension("AUTH")
	if !ok {
		if !cred.Required {
			return nil
		}
		return fail("host "+name+" offers no AUTH, but credentials are configured for it", true)
	}
	mech, client := saslClient(cred, offered)
	if client == nil {
		if !cred.Required {
			return nil
		}
		return fail("host "+name+" offers AUTH "+offered+", none of which the credentials for it may use", true)
	}
	if err := s.c.Auth(client); err != nil {
		rep, isReply := serverReply(err)
		if !isReply {
			var se interface{ Timeout() bool }
			if errors.As(err, &se) || isLost(err) {
				f := localFailure(ctx, name, stepAUTH, err)
				s.broken = true
				t.closeSession(s)
				return &sessFail{reply: f, next: true}
			}
			return fail("SASL "+mech+" authentication with "+name+" failed: "+shortErr(err), false)
		}
		return fail("SASL "+mech+" authentication failed; host "+name+" said: "+rep.Error(), true)
	}
	s.authed = mech
	s.tlsText += ", AUTH " + mech
	return nil
}
