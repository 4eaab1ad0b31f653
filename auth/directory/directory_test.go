package directory_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/auth/directory"
	"github.com/postern/postern/auth/directory/ldaptest"
	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/route"
	"github.com/postern/postern/scan"
	"github.com/postern/postern/scan/scanner"
	"github.com/postern/postern/smtpserver"
)

// The Directory is each consumer's source through the interface the
// consumer declares.
var (
	_ route.RecipientDirectory   = (*directory.Directory)(nil)
	_ scan.PolicyLookup          = (*directory.Directory)(nil)
	_ smtpserver.PasswordChecker = (*directory.Directory)(nil)
	_ auth.SenderDirectory       = (*directory.Directory)(nil)
	_ auth.SenderAllower         = (*directory.Directory)(nil)
)

// users is the test site: alice has a second address and spam filtering
// off; bob has lists and scores; carol has no policy attributes.
var users = strings.Join([]string{
	ldaptest.Person("alice", "alice-pw", []string{"alice@example.test", "a.smith@example.test"},
		"amavisBypassSpamChecks: TRUE"),
	ldaptest.Person("bob", "bob-pw", []string{"bob@example.test"},
		"amavisSpamTag2Level: 4.5", "amavisSpamKillLevel: 12",
		"amavisWhitelistSender: friend@partner.test", "amavisWhitelistSender: @trusted.test",
		"amavisBlacklistSender: @spammer.test", "amavisBlacklistSender: not an address"),
	ldaptest.Person("carol", "carol-pw", []string{"carol@example.test"}),
}, "\n")

type fixture struct {
	srv  *ldaptest.Server
	dir  *directory.Directory
	logs *testutil.LogBuffer
	clk  *testutil.Clock
}

// start runs slapd with users and a Directory on it, bound as the
// service account over StartTLS.
func start(t *testing.T, ldif string, mod func(*directory.Config)) *fixture {
	t.Helper()
	srv := ldaptest.Start(t, ldaptest.Options{LDIF: ldif})
	return open(t, srv, mod)
}

func open(t *testing.T, srv *ldaptest.Server, mod func(*directory.Config)) *fixture {
	t.Helper()
	f := &fixture{srv: srv, logs: &testutil.LogBuffer{}, clk: testutil.NewClock()}
	pw := filepath.Join(t.TempDir(), "bindpw")
	require.NoError(t, os.WriteFile(pw, []byte(ldaptest.ServicePassword+"\n"), 0o600))
	cfg := directory.Config{URLs: []string{srv.URL}, TLS: directory.TLSStartTLS, CAFile: srv.CAFile,
		BindDN: ldaptest.ServiceDN, BindPasswordFile: pw, Base: ldaptest.Suffix,
		Now: f.clk.Now, Logger: f.logs.Logger()}
	if mod != nil {
		mod(&cfg)
	}
	d, err := directory.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	f.dir = d
	return f
}

func TestRecipients(t *testing.T) {
	f := start(t, users, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"alice@example.test", true},
		{"a.smith@example.test", true}, // mailAlternateAddress
		{"Alice@Example.TEST", true},   // mail compares ignoring case
		{"nobody@example.test", false},
		{"alice@other.test", false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			ok, err := f.dir.RecipientExists(ctx, tc.addr)
			require.NoError(t, err)
			assert.Equal(t, tc.want, ok)
		})
	}
	a, err := f.dir.Recipient(ctx, "a.smith@example.test")
	require.NoError(t, err)
	assert.Equal(t, "uid=alice,"+ldaptest.People, a.Entry.DN)
	assert.Equal(t, []string{"alice@example.test", "a.smith@example.test"}, a.Entry.Mail)
	assert.True(t, a.Cached, "asked above")
	assert.Equal(t, "(|(mail=a.smith@example.test)(mailAlternateAddress=a.smith@example.test))", a.Filter)
}

// TestCache shows answers kept for their TTL (found and not found
// alike) and asked again after it, counted by the searches slapd logs.
func TestCache(t *testing.T) {
	f := start(t, users, func(c *directory.Config) { c.CacheTTL, c.NegativeTTL = 5*time.Minute, time.Minute })
	ctx := context.Background()
	base := f.srv.Searches()
	for range 3 {
		ok, err := f.dir.RecipientExists(ctx, "alice@example.test")
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = f.dir.RecipientExists(ctx, "ghost@example.test")
		require.NoError(t, err)
		require.False(t, ok)
	}
	assert.Equal(t, base+2, f.srv.Searches(), "one search per address")

	// A user added now is unknown until the negative answer expires.
	f.srv.Modify(ldaptest.Person("ghost", "pw", []string{"ghost@example.test"}))
	ok, _ := f.dir.RecipientExists(ctx, "ghost@example.test")
	assert.False(t, ok, "negative answer still cached")
	f.clk.Advance(time.Minute)
	ok, err := f.dir.RecipientExists(ctx, "ghost@example.test")
	require.NoError(t, err)
	assert.True(t, ok)
	ok, _ = f.dir.RecipientExists(ctx, "alice@example.test")
	assert.True(t, ok)
	assert.Equal(t, base+3, f.srv.Searches(), "alice still cached, ghost asked again")
	f.clk.Advance(5 * time.Minute)
	_, err = f.dir.RecipientExists(ctx, "alice@example.test")
	require.NoError(t, err)
	assert.Equal(t, base+4, f.srv.Searches())
}

// TestConcurrentLookupsShareOneSearch: many RCPTs of one address at
// once make one search.
func TestConcurrentLookupsShareOneSearch(t *testing.T) {
	f := start(t, users, nil)
	base := f.srv.Searches()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			ok, err := f.dir.RecipientExists(context.Background(), "carol@example.test")
			assert.NoError(t, err)
			assert.True(t, ok)
		})
	}
	wg.Wait()
	assert.Equal(t, base+1, f.srv.Searches())
}

// TestInjection sends hostile addresses and logins: each is looked up as
// itself (slapd logs the escaped filter), finds nothing and is logged.
func TestInjection(t *testing.T) {
	// A user whose uid is "*" must not be a wildcard either.
	f := start(t, users+"\n"+ldaptest.Person("x", "x-pw", []string{"x@example.test"}), nil)
	ctx := context.Background()
	hostile := []string{
		"*)(uid=*",
		"*",
		"*@example.test",
		"alice@example.test)(mail=*",
		"x@example.test)(|(uid=*",
		"alice\x00@example.test",
		"\\00",
		"(alice@example.test)",
		"al*ce@example.test",
		"a)(objectClass=*))(|(mail=b@example.test",
	}
	for _, h := range hostile {
		t.Run(fmt.Sprintf("%q", h), func(t *testing.T) {
			before := len(f.srv.Filters())
			a, err := f.dir.Recipient(ctx, h)
			require.NoError(t, err)
			assert.Nil(t, a.Entry, "found %v", a.Entry)
			ok, err := f.dir.SenderAllowed(ctx, h, "alice@example.test")
			require.NoError(t, err)
			assert.False(t, ok)
			assert.ErrorIs(t, f.dir.CheckPassword(ctx, nil, h, "alice-pw"), directory.ErrBadCredentials)
			// slapd received one equality assertion per placeholder, on
			// the whole value: no wildcard, no extra term.
			got := f.srv.Filters()[before:]
			require.NotEmpty(t, got)
			for _, flt := range got {
				assert.NotContains(t, flt, "=*)", "a presence or wildcard term reached slapd: %s", flt)
				assert.LessOrEqual(t, strings.Count(flt, "("), 3, flt)
			}
		})
	}
	assert.Contains(t, f.logs.String(), "lookup value holds LDAP filter characters")
	assert.Contains(t, f.logs.String(), `*)(uid=*`)
}

func TestUnavailable(t *testing.T) {
	f := start(t, users, func(c *directory.Config) { c.Timeout = 3 * time.Second })
	ctx := context.Background()
	ok, err := f.dir.RecipientExists(ctx, "alice@example.test")
	require.NoError(t, err)
	require.True(t, ok)

	f.srv.Stop()
	for _, addr := range []string{"carol@example.test", "nobody@example.test"} {
		ok, err = f.dir.RecipientExists(ctx, addr)
		require.Error(t, err)
		assert.False(t, ok)
		assert.ErrorIs(t, err, directory.ErrUnavailable)
		var ue *directory.UnavailableError
		require.ErrorAs(t, err, &ue)
		assert.True(t, ue.Temporary())
	}
	_, _, err = f.dir.LookupPolicy(ctx, "bob@example.test")
	assert.ErrorIs(t, err, directory.ErrUnavailable)
	err = f.dir.CheckPassword(ctx, nil, "bob", "bob-pw")
	assert.ErrorIs(t, err, directory.ErrUnavailable, "a login while down is not a wrong password")
	_, err = f.dir.SenderAllowed(ctx, "bob", "bob@example.test")
	assert.ErrorIs(t, err, directory.ErrUnavailable)
	assert.False(t, f.dir.Allowed("bob", "bob@example.test"))
	assert.Contains(t, f.logs.String(), "directory: lookup failed")

	// Failures were not cached; the broken connections are replaced.
	f.srv.Restart()
	for _, addr := range []string{"carol@example.test", "alice@example.test"} {
		ok, err = f.dir.RecipientExists(ctx, addr)
		require.NoError(t, err, addr)
		assert.True(t, ok)
	}
	require.NoError(t, f.dir.CheckPassword(ctx, nil, "bob", "bob-pw"))
}

// TestRestartBetweenLookups: idle connections that a restart broke are
// replaced without failing a lookup.
func TestRestartBetweenLookups(t *testing.T) {
	f := start(t, users, func(c *directory.Config) { c.CacheTTL, c.NegativeTTL = -1, -1 })
	ctx := context.Background()
	for _, addr := range []string{"alice@example.test", "bob@example.test"} {
		_, err := f.dir.RecipientExists(ctx, addr)
		require.NoError(t, err)
	}
	require.NoError(t, f.dir.CheckPassword(ctx, nil, "carol", "carol-pw"))
	f.srv.Stop()
	f.srv.Restart()
	ok, err := f.dir.RecipientExists(ctx, "alice@example.test")
	require.NoError(t, err)
	assert.True(t, ok)
	require.NoError(t, f.dir.CheckPassword(ctx, nil, "carol", "carol-pw"))
}

func TestLogin(t *testing.T) {
	f := start(t, users+"\n"+ldaptest.Person("dup1", "pw", []string{"shared@example.test"})+"\n"+
		ldaptest.Person("dup2", "pw", []string{"shared@example.test"}), nil)
	ctx := context.Background()
	for _, tc := range []struct {
		user, pw string
		want     error
	}{
		{"alice", "alice-pw", nil},
		{"alice@example.test", "alice-pw", nil}, // by address
		{"alice", "wrong", directory.ErrBadCredentials},
		{"alice", "", directory.ErrBadCredentials},
		{"", "alice-pw", directory.ErrBadCredentials},
		{"nobody", "alice-pw", directory.ErrBadCredentials},
		{"bob", "alice-pw", directory.ErrBadCredentials},
		{"shared@example.test", "pw", directory.ErrBadCredentials}, // two entries: whose password?
	} {
		t.Run(tc.user+"/"+tc.pw, func(t *testing.T) {
			err := f.dir.CheckPassword(ctx, nil, tc.user, tc.pw)
			if tc.want == nil {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, tc.want)
		})
	}
	// The empty password never reaches the server: an empty simple bind
	// is anonymous and would succeed.
	binds := f.srv.Binds()
	require.ErrorIs(t, f.dir.CheckPassword(ctx, nil, "alice", ""), directory.ErrBadCredentials)
	assert.Equal(t, binds, f.srv.Binds())
	// Passwords are not cached: every check binds.
	require.NoError(t, f.dir.CheckPassword(ctx, nil, "alice", "alice-pw"))
	require.NoError(t, f.dir.CheckPassword(ctx, nil, "alice", "alice-pw"))
	assert.Equal(t, binds+2, f.srv.Binds())
	// A password changed in the directory is in force at once.
	f.srv.Modify("dn: uid=alice," + ldaptest.People + "\nchangetype: modify\nreplace: userPassword\nuserPassword: new-pw\n")
	assert.ErrorIs(t, f.dir.CheckPassword(ctx, nil, "alice", "alice-pw"), directory.ErrBadCredentials)
	assert.NoError(t, f.dir.CheckPassword(ctx, nil, "alice", "new-pw"))
	assert.Contains(t, f.logs.String(), "login name matches several entries")
}

func TestSenderAndVersion(t *testing.T) {
	f := start(t, users, func(c *directory.Config) { c.CacheTTL = -1 })
	ctx := context.Background()
	for _, tc := range []struct {
		user, addr string
		want       bool
	}{
		{"alice", "alice@example.test", true},
		{"alice", "A.Smith@example.test", true},
		{"alice@example.test", "a.smith@example.test", true},
		{"alice", "bob@example.test", false},
		{"nobody", "nobody@example.test", false},
	} {
		ok, err := f.dir.SenderAllowed(ctx, tc.user, tc.addr)
		require.NoError(t, err)
		assert.Equal(t, tc.want, ok, "%s as %s", tc.user, tc.addr)
		assert.Equal(t, tc.want, f.dir.Allowed(tc.user, tc.addr))
	}
	v1, ok := f.dir.Version("bob")
	require.True(t, ok)
	_, ok = f.dir.Version("nobody")
	assert.False(t, ok)
	// modifyTimestamp has a one-second resolution.
	time.Sleep(1100 * time.Millisecond)
	f.srv.Modify("dn: uid=bob," + ldaptest.People + "\nchangetype: modify\nreplace: userPassword\nuserPassword: other\n")
	v2, ok := f.dir.Version("bob")
	require.True(t, ok)
	assert.NotEqual(t, v1, v2, "a changed entry has a new version")
}

func TestPolicy(t *testing.T) {
	many := []string{}
	for i := range 25 {
		many = append(many, fmt.Sprintf("amavisWhitelistSender: s%d@partner.test", i))
	}
	f := start(t, users+"\n"+ldaptest.Person("dave", "pw", []string{"dave@example.test"}, many...)+"\n"+
		ldaptest.Person("erin", "pw", []string{"erin@example.test"}, "amavisBypassSpamChecks: FALSE",
			"amavisSpamKillLevel: off", "amavisSpamTag2Level: nonsense"), nil)
	ctx := context.Background()
	p, found, err := f.dir.LookupPolicy(ctx, "a.smith@example.test")
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, scanner.SpamOff, p.Spam)
	assert.Equal(t, "ldap", p.Source)

	p, found, err = f.dir.LookupPolicy(ctx, "bob@example.test")
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, scanner.SpamDefault, p.Spam)
	assert.Equal(t, 4.5, p.TagScore)
	assert.Equal(t, 12.0, p.RejectScore)
	assert.Equal(t, []string{"friend@partner.test", "@trusted.test"}, p.Allow)
	assert.Equal(t, []string{"@spammer.test"}, p.Deny, "the unusable entry is skipped")
	assert.Equal(t, scanner.SenderAllowed, p.Sender("Friend@Partner.test"))
	assert.Equal(t, scanner.SenderDenied, p.Sender("x@spammer.test"))

	_, found, err = f.dir.LookupPolicy(ctx, "carol@example.test")
	require.NoError(t, err)
	assert.False(t, found, "an entry without policy attributes leaves it to the policy file")
	_, found, err = f.dir.LookupPolicy(ctx, "nobody@example.test")
	require.NoError(t, err)
	assert.False(t, found)

	p, _, err = f.dir.LookupPolicy(ctx, "dave@example.test")
	require.NoError(t, err)
	assert.Len(t, p.Allow, directory.DefaultMaxListEntries)

	p, found, err = f.dir.LookupPolicy(ctx, "erin@example.test")
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, scanner.SpamOn, p.Spam)
	assert.True(t, p.NeverReject)
	assert.Zero(t, p.TagScore)
	logs := f.logs.String()
	assert.Contains(t, logs, "more than 20 entries")
	assert.Contains(t, logs, `not an address`)
	assert.Contains(t, logs, `nonsense`)
}

// TestPaging: slapd stops a search that is not paged at its size limit
// (5 here); the paged search reads every match.
func TestPaging(t *testing.T) {
	var ldif []string
	for i := range 12 {
		ldif = append(ldif, ldaptest.Person(fmt.Sprintf("p%02d", i), "pw", []string{fmt.Sprintf("p%02d@paged.test", i)}))
	}
	srv := ldaptest.Start(t, ldaptest.Options{LDIF: strings.Join(ldif, "\n"), SizeLimit: 5})
	f := open(t, srv, func(c *directory.Config) {
		c.RecipientFilter = "(&(objectClass=inetOrgPerson)(mail=*@%d))"
		c.PageSize, c.MaxEntries = 3, 50
	})
	a, err := f.dir.Recipient(context.Background(), "any@paged.test")
	require.NoError(t, err)
	require.NotNil(t, a.Entry)
	assert.Equal(t, 12, a.Entry.Matches)
	assert.Equal(t, "uid=p00,"+ldaptest.People, a.Entry.DN, "the first by DN")
	assert.Contains(t, f.logs.String(), "several entries match")

	// Past MaxEntries the first ones answer, with a warning.
	g := open(t, srv, func(c *directory.Config) {
		c.RecipientFilter = "(&(objectClass=inetOrgPerson)(mail=*@%d))"
		c.PageSize, c.MaxEntries = 3, 4
	})
	a, err = g.dir.Recipient(context.Background(), "any@paged.test")
	require.NoError(t, err)
	assert.Equal(t, 4, a.Entry.Matches)
	assert.Contains(t, g.logs.String(), "matches more entries than are read")
}

func TestTLS(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Options{LDIF: users})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		mod  func(*directory.Config)
		ok   bool
	}{
		{"starttls", nil, true},
		{"ldaps", func(c *directory.Config) { c.URLs, c.TLS = []string{srv.LDAPSURL}, directory.TLSAuto }, true},
		{"plain on loopback", func(c *directory.Config) { c.TLS = directory.TLSAuto }, true},
		{"ldaps, unknown CA", func(c *directory.Config) { c.URLs, c.CAFile = []string{srv.LDAPSURL}, "" }, false},
		{"starttls, unknown CA", func(c *directory.Config) { c.CAFile = "" }, false},
		{"ldaps, wrong name", func(c *directory.Config) {
			c.URLs = []string{strings.Replace(srv.LDAPSURL, "127.0.0.1", "127.0.0.2", 1)}
		}, false},
		{"host name, looked up", func(c *directory.Config) {
			c.URLs = []string{strings.Replace(srv.LDAPSURL, "127.0.0.1", "localhost", 1)}
		}, true},
		{"failover to the second server", func(c *directory.Config) {
			c.URLs = []string{"ldap://127.0.0.1:1", srv.URL}
		}, true},
		{"wrong service password", func(c *directory.Config) { c.BindPasswordFile, c.BindPassword = "", "nope" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := open(t, srv, tc.mod)
			ok, err := f.dir.RecipientExists(ctx, "alice@example.test")
			if tc.ok {
				require.NoError(t, err)
				assert.True(t, ok)
				return
			}
			assert.ErrorIs(t, err, directory.ErrUnavailable)
		})
	}
}

func TestCovers(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Options{})
	f := open(t, srv, func(c *directory.Config) { c.Domains = []string{"example.test", ".corp.test"} })
	for d, want := range map[string]bool{"example.test": true, "EXAMPLE.test.": true, "a.corp.test": true,
		"corp.test": false, "other.test": false} {
		assert.Equal(t, want, f.dir.Covers(d), d)
	}
	g := open(t, srv, nil)
	assert.True(t, g.dir.Covers("anything.test"))
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	ok := directory.Config{URLs: []string{"ldap://127.0.0.1"}, Base: "dc=x"}
	for _, tc := range []struct {
		name string
		mod  func(*directory.Config)
	}{
		{"no URL", func(c *directory.Config) { c.URLs = nil }},
		{"no base", func(c *directory.Config) { c.Base = " " }},
		{"bad scheme", func(c *directory.Config) { c.URLs = []string{"http://x"} }},
		{"URL with a path", func(c *directory.Config) { c.URLs = []string{"ldap://x/dc=x??sub"} }},
		{"URL with a user", func(c *directory.Config) { c.URLs = []string{"ldap://u:p@x"} }},
		{"bind DN without password", func(c *directory.Config) { c.BindDN = "cn=x" }},
		{"empty password file", func(c *directory.Config) { c.BindDN, c.BindPasswordFile = "cn=x", empty }},
		{"missing password file", func(c *directory.Config) { c.BindDN, c.BindPasswordFile = "cn=x", empty+"x" }},
		{"both passwords", func(c *directory.Config) { c.BindDN, c.BindPasswordFile, c.BindPassword = "cn=x", empty, "p" }},
		{"filter without placeholder", func(c *directory.Config) { c.RecipientFilter = "(mail=alice@example.test)" }},
		{"unbalanced filter", func(c *directory.Config) { c.RecipientFilter = "(mail=%s" }},
		{"unknown placeholder", func(c *directory.Config) { c.LoginFilter = "(uid=%x)" }},
		{"lone percent", func(c *directory.Config) { c.LoginFilter = "(uid=%s)%" }},
		{"bad attribute", func(c *directory.Config) { c.MailAttributes = []string{"mail)(x"} }},
		{"bad policy attribute", func(c *directory.Config) { c.Policy.Allow = "a b" }},
		{"bad domain", func(c *directory.Config) { c.Domains = []string{"a@b"} }},
		{"missing CA file", func(c *directory.Config) { c.CAFile = empty + "x" }},
		{"CA file without PEM", func(c *directory.Config) { c.CAFile = empty }},
		{"bad TLS mode", func(c *directory.Config) { c.TLS = 9 }},
		{"negative timeout", func(c *directory.Config) { c.Timeout = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mod(&cfg)
			_, err := directory.New(cfg)
			assert.ErrorIs(t, err, directory.ErrConfig)
		})
	}
	d, err := directory.New(ok)
	require.NoError(t, err, "New connects to nothing")
	require.NoError(t, d.Close())
	_, err = d.RecipientExists(context.Background(), "a@b.test")
	assert.True(t, errors.Is(err, directory.ErrClosed), "%v", err)
}
