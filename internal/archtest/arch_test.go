// Package archtest enforces the dependency rules of docs/ARCHITECTURE.md:
// they are what keeps each Postern component importable on its own.
package archtest

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/postern/postern"

type pkg struct {
	ImportPath string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	dec := json.NewDecoder(out)
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		pkgs = append(pkgs, p)
	}
	require.NoError(t, cmd.Wait())
	require.NotEmpty(t, pkgs)
	return pkgs
}

func isStdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func rel(path string) string {
	if path == module {
		return "."
	}
	return strings.TrimPrefix(path, module+"/")
}

func under(r, dir string) bool { return r == dir || strings.HasPrefix(r, dir+"/") }

func TestDependencyRules(t *testing.T) {
	for _, v := range violations(listPackages(t)) {
		t.Error(v)
	}
}

// The rules must catch what they are about.
func TestRulesCatchViolations(t *testing.T) {
	bad := []pkg{
		{module, []string{"github.com/miekg/dns"}},
		{module + "/smtpserver/greetpause", []string{"golang.org/x/time/rate"}},
		{module + "/dnsbl", []string{module + "/smtpserver"}},
		{module + "/scan", []string{"github.com/emersion/go-smtp"}},
		{module + "/queue", []string{module + "/scan"}},
		{module + "/route", []string{"github.com/emersion/go-smtp", module + "/queue", module}},
		{module + "/examples/relay", []string{module + "/smtpserver", "github.com/emersion/go-smtp"}},
		{module + "/route", []string{module + "/internal/testutil", module + "/internal/filewatch"}},
		{module + "/internal/filewatch", []string{"log/slog", "github.com/miekg/dns"}},
	}
	require.Len(t, violations(bad), 7)
}

// sharedInternal is the one internal package public packages may import:
// the file watcher behind their reloadable maps. It must import only the
// standard library, so it adds no dependency to any of them.
const sharedInternal = "internal/filewatch"

// violations checks each (importer, imported) pair against the rules.
func violations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		r := rel(p.ImportPath)
		if r == sharedInternal {
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
			case ours && under(rel(imp), "internal") && rel(imp) != sharedInternal && !strings.HasSuffix(r, "_test"):
				out = append(out, fmt.Sprintf("%s imports internal package %s: public packages must stand alone", r, imp))
			}
		}
	}
	return out
}
