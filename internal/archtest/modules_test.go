package archtest

import (
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Third-party modules, by what they are for.
const (
	smtp     = "github.com/emersion/go-smtp"
	sasl     = "github.com/emersion/go-sasl"
	msgauth  = "github.com/emersion/go-msgauth"
	spf      = "blitiri.com.ar/go/spf"
	dns      = "github.com/miekg/dns"
	redis    = "github.com/redis/go-redis/v9"
	xxhash   = "github.com/cespare/xxhash/v2" // go-redis and enmime's tablewriter
	atomic   = "go.uber.org/atomic"           // go-redis
	xcrypto  = "golang.org/x/crypto"
	xnet     = "golang.org/x/net"
	xsys     = "golang.org/x/sys"
	xtext    = "golang.org/x/text"
	xtime    = "golang.org/x/time"
	enmimeV2 = "github.com/jhillyerd/enmime/v2"
	testify  = "github.com/stretchr/testify"
	yaml     = "go.yaml.in/yaml/v3" // testify
	milter   = "github.com/d--j/go-milter"
	gomsg    = "github.com/emersion/go-message" // go-milter's client reads headers with its textproto
)

// ldap is go-ldap and what it pulls: only auth/directory may have it.
var ldap = []string{"github.com/go-ldap/ldap/v3", "github.com/go-asn1-ber/asn1-ber", "github.com/Azure/go-ntlmssp",
	"github.com/google/uuid", xcrypto}

// enmime is enmime and everything it pulls: the reason the scanner
// adapters must not import package scan.
var enmime = []string{enmimeV2, xxhash, xnet, xsys, xtext,
	"github.com/cention-sany/utf7", "github.com/clipperhouse/displaywidth", "github.com/clipperhouse/uax29/v2",
	"github.com/fatih/color", "github.com/gogs/chardet", "github.com/inbucket/html2text",
	"github.com/mattn/go-colorable", "github.com/mattn/go-isatty", "github.com/mattn/go-runewidth",
	"github.com/olekukonko/cat", "github.com/olekukonko/errors", "github.com/olekukonko/ll",
	"github.com/olekukonko/tablewriter", "github.com/pkg/errors", "github.com/ssor/bom"}

func mods(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// modules is the dependency claim of every package of the library
// module: the third-party modules its whole dependency graph pulls (go
// list -deps, not only its own imports), exactly. A package that is not
// here, a module a package pulls that its row lacks, and a module a row
// lists that the package no longer pulls all fail TestModules. An empty
// row is "standard library only" (Postern's own stdlib-only packages
// allowed). Change a row only with the claim in README.md and the
// package's doc.
var modules = map[string][]string{
	".":                       nil,
	"smtpserver":              {smtp, sasl},
	"smtpserver/greetpause":   nil,
	"smtpserver/proxyproto":   nil,
	"smtpserver/access":       nil,
	"smtpserver/milter":       {milter, gomsg, xtext},
	"queue":                   {xsys},
	"queue/dsn":               nil,
	"route":                   {smtp, sasl, dns, xnet, xsys, xtext},
	"dnsbl":                   {dns, xnet, xsys},
	"auth":                    {spf, msgauth, xcrypto, xnet, xsys, xtext},
	"auth/directory":          ldap,
	"auth/directory/ldaptest": nil,
	"scan":                    enmime,
	"scan/scanner":            nil,
	"scan/clamav":             nil,
	"scan/spamd":              nil,
	"scan/rspamd":             nil,
	"scan/scantest":           nil,
	"ratelimit":               {xtime},
	"ratelimit/redisstore":    {redis, xxhash, atomic, xsys, xtime},

	// The one DNS layer (a leaf: dnsbl and auth import it without
	// building route or go-smtp, which its own test checks by package)
	// and the SDK's front-page example.
	"route/resolver":         {dns, xnet, xsys},
	"route/resolver/dnstest": {dns, xnet, xsys},

	// Outbound transport security: DANE, MTA-STS and TLS-RPT, each on
	// the one resolver only (no go-smtp).
	"route/dane":       {dns, xnet, xsys},
	"route/mtasts":     {dns, xnet, xsys},
	"route/tlsrpt":     {dns, xnet, xsys},
	"examples/minimal": {smtp, sasl, dns, xnet, xsys, xtext},

	// Not public API, but under the same rule: the file watcher is
	// imported by public packages and must add nothing to them.
	"internal/filewatch": nil,
	"internal/spool":     nil,
	"internal/termsafe":  nil,
	"internal/proc":      nil,
	"internal/testutil":  {testify, yaml}, // tests only: public packages may not import it (violations)
	"internal/archtest":  nil,

	// Tools of the repository, not imported by anyone.
	"bench":       mods(enmime, []string{smtp, sasl, msgauth, dns, xcrypto, xtime}),
	"reliability": {spf, smtp, sasl, msgauth, dns, xcrypto, xnet, xsys, xtext},
}

// pending names rows whose package may not exist yet (see above). Remove
// a name once its package is merged.
var pending = map[string]bool{}

// TestModules checks the table against the library's real dependency
// graph.
func TestModules(t *testing.T) {
	for _, v := range moduleViolations(goList(t), modules, pending) {
		t.Error(v)
	}
}

// moduleViolations compares each package's third-party modules with its
// row.
func moduleViolations(l listing, table map[string][]string, pending map[string]bool) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range l.own {
		r := rel(p.ImportPath)
		seen[r] = true
		pulled := l.modulesOf(p)
		row, ok := table[r]
		if !ok {
			out = append(out, fmt.Sprintf("%s is not in the modules table; it pulls %v", r, pulled))
			continue
		}
		for _, m := range pulled {
			if !slices.Contains(row, m) {
				out = append(out, fmt.Sprintf("%s pulls %s, which its row does not allow (%s)", r, m, strings.Join(l.chain(p, m), " → ")))
			}
		}
		for _, m := range row {
			if !slices.Contains(pulled, m) {
				out = append(out, fmt.Sprintf("%s no longer pulls %s: remove it from its row", r, m))
			}
		}
	}
	for r := range table {
		if !seen[r] && !pending[r] {
			out = append(out, fmt.Sprintf("the modules table has a row for %s, which is no package of the module", r))
		}
	}
	slices.Sort(out)
	return out
}

// modulesOf returns the third-party modules in p's dependency graph,
// sorted.
func (l listing) modulesOf(p *pkg) []string {
	var out []string
	for _, d := range p.Deps {
		if m := l.moduleOf(d); m != "" && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

// moduleOf returns the third-party module of package path, "" for the
// standard library and this module.
func (l listing) moduleOf(path string) string {
	d := l.pkgs[path]
	if d == nil || d.Standard || d.Module == nil || d.Module.Path == module {
		return ""
	}
	return d.Module.Path
}

// chain is the shortest import path from p to a package of module m: the
// why of a violation.
func (l listing) chain(p *pkg, m string) []string {
	prev := map[string]string{p.ImportPath: ""}
	queue := []string{p.ImportPath}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if l.moduleOf(cur) == m {
			var path []string
			for x := cur; x != ""; x = prev[x] {
				path = append([]string{x}, path...)
			}
			return path
		}
		if q := l.pkgs[cur]; q != nil {
			for _, imp := range q.Imports {
				if _, ok := prev[imp]; !ok {
					prev[imp] = cur
					queue = append(queue, imp)
				}
			}
		}
	}
	return []string{p.ImportPath, "?", m}
}

// TestModulesCatchViolations: the check fails where it should, on the
// real graph changed by an overlay (the violation this table was made
// for: an adapter importing scan, and with it enmime) and on made-up
// listings.
func TestModulesCatchViolations(t *testing.T) {
	clean := goList(t)
	dir := clean.pkgs[module+"/scan/clamav"].Dir
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "bad.go")
	require.NoError(t, os.WriteFile(bad, []byte("package clamav\n\nimport _ \"github.com/postern/postern/scan\"\n"), 0o644))
	overlay, err := json.Marshal(map[string]any{"Replace": map[string]string{filepath.Join(dir, "zz_archtest_bad.go"): bad}})
	require.NoError(t, err)
	ov := filepath.Join(tmp, "overlay.json")
	require.NoError(t, os.WriteFile(ov, overlay, 0o644))

	got := moduleViolations(goList(t, "-overlay="+ov), modules, pending)
	require.NotEmpty(t, got)
	var clamav []string
	for _, v := range got {
		require.True(t, strings.HasPrefix(v, "scan/clamav pulls "), "only the adapter changed: %s", v)
		clamav = append(clamav, v)
	}
	assert.Len(t, clamav, len(enmime), "every module enmime brings is reported")
	assert.Contains(t, got, "scan/clamav pulls "+enmimeV2+", which its row does not allow ("+
		module+"/scan/clamav → "+module+"/scan → "+enmimeV2+")")

	// A package with no row, a stale row and a module no longer pulled.
	table := map[string][]string{}
	for k, v := range modules {
		table[k] = v
	}
	delete(table, "dnsbl")
	table["gone"] = nil
	table["queue"] = []string{xsys, xtime}
	got = moduleViolations(clean, table, pending)
	assert.Equal(t, []string{
		"dnsbl is not in the modules table; it pulls [" + dns + " " + xnet + " " + xsys + "]",
		"queue no longer pulls " + xtime + ": remove it from its row",
		"the modules table has a row for gone, which is no package of the module",
	}, got)
}

// stdlibClaim is how docs say a package needs nothing but the standard
// library.
var stdlibClaim = regexp.MustCompile(`(?i)standard library only|imports? (only )?the standard library`)

// TestDocClaims: a package the README's package table or its own package
// doc calls standard library only has an empty row, so the claim is
// tested too.
func TestDocClaims(t *testing.T) {
	l := goList(t)
	root := l.pkgs[module].Dir
	claimed := map[string]string{}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	rows := 0
	for line := range strings.SplitSeq(string(readme), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !stdlibClaim.MatchString(cells[2]) {
			continue
		}
		rows++
		for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(cells[1], -1) {
			name := m[1]
			if name == "postern" {
				name = "." // the module root
			}
			claimed[name] = "README.md"
		}
	}
	require.GreaterOrEqual(t, rows, 4, "the README's package table has its claims")
	for _, p := range l.own {
		if doc := packageDoc(t, p); stdlibClaim.MatchString(doc) {
			claimed[rel(p.ImportPath)] = "its package doc"
		}
	}
	for _, want := range []string{".", "smtpserver/greetpause", "smtpserver/proxyproto", "queue/dsn", "scan/scanner", "scan/clamav", "scan/spamd", "scan/rspamd", "internal/filewatch"} {
		assert.Contains(t, claimed, want, "the claim is found")
	}
	for name, where := range claimed {
		row, ok := modules[name]
		if assert.True(t, ok, "%s (claimed standard library only in %s) has a row", name, where) {
			assert.Empty(t, row, "%s is claimed standard library only in %s", name, where)
		}
	}
}

// packageDoc returns the package comment of p.
func packageDoc(t *testing.T, p *pkg) string {
	t.Helper()
	var b strings.Builder
	fset := token.NewFileSet()
	for _, f := range p.GoFiles {
		af, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
		require.NoError(t, err)
		if af.Doc != nil {
			b.WriteString(af.Doc.Text())
		}
	}
	return b.String()
}
