package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// outsideAddr returns a source address the relay does not trust: the
// built-in defaults (and most sites) trust all of 127.0.0.0/8, so an
// "Internet" client needs an address of its own. It adds one of
// TEST-NET-2 (RFC 5737) to the loopback interface for the test and removes
// it after; that needs root (CI runs as root).
func outsideAddr(t *testing.T) string {
	t.Helper()
	return outsideAddrs(t, 1)[0]
}

// outsideAddrs returns n distinct such addresses (n at most 50), for
// clients the relay must tell apart (each with its own PTR record). They
// follow the process's first one, so concurrent test processes rarely
// meet.
func outsideAddrs(t *testing.T, n int) []string {
	t.Helper()
	require.LessOrEqual(t, n, 50)
	ipCmd := need(t, "ip")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("an untrusted client address needs root (ip addr add)")
		}
		t.Skip("an untrusted client address needs root (ip addr add)")
	}
	var out []string
	for i := range n {
		addr := fmt.Sprintf("198.51.100.%d", 2+(os.Getpid()+i)%250)
		msg, err := exec.Command(ipCmd, "addr", "add", addr+"/32", "dev", "lo").CombinedOutput()
		switch {
		case err == nil:
			t.Cleanup(func() { _ = exec.Command(ipCmd, "addr", "del", addr+"/32", "dev", "lo").Run() })
		case strings.Contains(string(msg), "File exists"):
			// Another test of this process added it and removes it.
		default:
			t.Fatalf("ip addr add %s: %v: %s", addr, err, msg)
		}
		out = append(out, addr)
	}
	return out
}
