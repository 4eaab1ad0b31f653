package ldaptest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// search runs ldapsearch as the service account.
func search(t *testing.T, s *Server, url string, tls bool, filter string) (string, error) {
	t.Helper()
	args := []string{"-x", "-LLL", "-H", url, "-D", ServiceDN, "-w", ServicePassword, "-b", Suffix, filter, "mail"}
	if tls {
		args = append([]string{"-ZZ"}, args...)
	}
	cmd := exec.Command("ldapsearch", args...)
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+s.CAFile)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestServer(t *testing.T) {
	s := Start(t, Options{LDIF: Person("alice", "pw", []string{"alice@example.test", "al@example.test"})})
	out, err := search(t, s, s.URL, true, "(mail=alice@example.test)")
	require.NoError(t, err, out)
	assert.Contains(t, out, "uid=alice,ou=people,dc=example,dc=test")
	out, err = search(t, s, s.LDAPSURL, false, "(mailAlternateAddress=al@example.test)")
	require.NoError(t, err, out)
	assert.Contains(t, out, "mail: alice@example.test")
	assert.Equal(t, 2, s.Searches())
	assert.Contains(t, s.Filters(), "(mailAlternateAddress=al@example.test)")

	// Anonymous clients read nothing.
	anon, _ := exec.Command("ldapsearch", "-x", "-LLL", "-H", s.URL, "-b", Suffix, "(uid=alice)").CombinedOutput()
	assert.Contains(t, string(anon), "No such object")
	assert.NotContains(t, string(anon), "uid=alice")

	s.Modify("dn: uid=alice,ou=people,dc=example,dc=test\nchangetype: modify\nreplace: mail\nmail: alice2@example.test\n")
	s.Stop()
	_, err = search(t, s, s.URL, true, "(uid=alice)")
	require.Error(t, err, "slapd stopped")
	s.Restart()
	out, err = search(t, s, s.URL, true, "(uid=alice)")
	require.NoError(t, err, out)
	assert.True(t, strings.Contains(out, "alice2@example.test"), out)
}
