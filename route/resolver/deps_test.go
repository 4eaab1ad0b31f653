package resolver

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The resolver is a leaf: dnsbl and auth import it, and a program that
// uses them must not build route or go-smtp for it.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	const mod = "github.com/postern/postern"
	list := func(args ...string) []string {
		out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
		require.NoError(t, err)
		return strings.Fields(string(out))
	}
	for _, pkg := range []string{"route/resolver", "route/resolver/dnstest"} {
		for _, imp := range list("-f", `{{join .Imports " "}}`, mod+"/"+pkg) {
			first, _, _ := strings.Cut(imp, "/")
			std := !strings.Contains(first, ".")
			ok := std || imp == "github.com/miekg/dns" || imp == mod
			assert.True(t, ok, "%s imports %s: only the standard library, miekg/dns and the root package", pkg, imp)
		}
	}
	for _, pkg := range []string{"route/resolver", "route/resolver/dnstest", "dnsbl", "auth"} {
		for _, dep := range list("-deps", mod+"/"+pkg) {
			assert.False(t, strings.HasPrefix(dep, "github.com/emersion/go-smtp"), "%s builds go-smtp", pkg)
			assert.NotEqual(t, mod+"/route", dep, "%s builds route", pkg)
		}
	}
}
