package archtest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDependencyRules: the import rules between Postern's own packages
// (which the module table of TestModules cannot express).
func TestDependencyRules(t *testing.T) {
	var pkgs []pkg
	for _, p := range goList(t).own {
		pkgs = append(pkgs, *p)
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

// The rules must catch what they are about.
func TestRulesCatchViolations(t *testing.T) {
	imp := func(path string, imports ...string) pkg { return pkg{ImportPath: path, Imports: imports} }
	bad := []pkg{
		imp(module, "github.com/miekg/dns"),
		imp(module+"/smtpserver/greetpause", "golang.org/x/time/rate"),
		imp(module+"/dnsbl", module+"/smtpserver"),
		imp(module+"/scan", "github.com/emersion/go-smtp"),
		imp(module+"/queue", module+"/scan"),
		imp(module+"/route", "github.com/emersion/go-smtp", module+"/queue", module),
		imp(module+"/examples/relay", module+"/smtpserver", "github.com/emersion/go-smtp"),
		imp(module+"/route", module+"/internal/testutil", module+"/internal/filewatch"),
		imp(module+"/internal/filewatch", "log/slog", "github.com/miekg/dns"),
		imp(module+"/internal/spool", "golang.org/x/sys/unix"),
	}
	require.Len(t, violations(bad), 8)
}

// sharedInternal are the internal packages public packages may import:
// the file watcher behind their reloadable maps and the message spool
// smtpserver and smtpserver/milter share. They must import only the
// standard library, so they add no dependency to any of them.
var sharedInternal = map[string]bool{"internal/filewatch": true, "internal/spool": true}

// violations checks each (importer, imported) pair against the rules.
func violations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		r := rel(p.ImportPath)
		if sharedInternal[r] {
			for _, imp := range p.Imports {
				if !isStdlib(imp) {
					out = append(out, fmt.Sprintf("%s must import only the standard library, imports %s", r, imp))
				}
			}
			continue
		}
		if under(r, "examples") || under(r, "internal") || under(r, "bench") || under(r, "reliability") {
			continue // only examples (and test tooling) may import everything
		}
		for _, imp := range p.Imports {
			ours := imp == module || strings.HasPrefix(imp, module+"/")
			switch {
			case (r == "." || r == "smtpserver/greetpause") && !isStdlib(imp):
				out = append(out, fmt.Sprintf("%s must import only the standard library, imports %s", r, imp))
			case ours && rel(imp) == "smtpserver":
				out = append(out, fmt.Sprintf("%s imports smtpserver: only examples may", r))
			case ours && under(rel(imp), "examples"):
				out = append(out, fmt.Sprintf("%s imports %s", r, imp))
			case strings.HasPrefix(imp, "github.com/emersion/go-smtp") && r != "smtpserver" && r != "route":
				out = append(out, fmt.Sprintf("%s imports go-smtp: only smtpserver (server side) and route (client side) may", r))
			case under(r, "queue") && ours && imp != module && !under(rel(imp), "queue"):
				out = append(out, fmt.Sprintf("queue knows nothing of filters: %s imports %s", r, imp))
			case ours && under(rel(imp), "internal") && !sharedInternal[rel(imp)] && !strings.HasSuffix(r, "_test"):
				out = append(out, fmt.Sprintf("%s imports internal package %s: public packages must stand alone", r, imp))
			}
		}
	}
	return out
}
