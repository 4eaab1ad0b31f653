package milter

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// ErrAddress is returned (wrapped) for a socket address that is not in
// one of the forms ParseAddress reads.
var ErrAddress = errors.New("milter: bad socket address")

// ParseAddress reads a milter socket address as Postfix and sendmail
// write it and returns the network ("tcp" or "unix") and address for
// net.Dial and net.Listen:
//
//	inet:127.0.0.1:8891        Postfix (smtpd_milters), also inet:[::1]:8891
//	inet:8891@127.0.0.1        sendmail (INPUT_MAIL_FILTER S=)
//	inet6:8891@::1             sendmail, IPv6
//	unix:/run/postern.sock     both; local:/path is sendmail's synonym
//	127.0.0.1:8891, /run/x     plain TCP address, plain path
func ParseAddress(s string) (network, address string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("%w %q: %s", ErrAddress, s, why)
	}
	kind, rest, ok := strings.Cut(s, ":")
	switch {
	case s == "":
		return bad("empty")
	case strings.HasPrefix(s, "/"):
		return "unix", s, nil
	case !ok:
		return bad("want inet:HOST:PORT, inet:PORT@HOST or unix:PATH")
	}
	switch strings.ToLower(kind) {
	case "unix", "local":
		if rest == "" {
			return bad("no path")
		}
		return "unix", rest, nil
	case "inet", "inet6", "tcp":
		if port, host, isSendmail := strings.Cut(rest, "@"); isSendmail {
			rest = net.JoinHostPort(host, port)
		}
		host, port, err := net.SplitHostPort(rest)
		if err != nil || port == "" {
			return bad("want HOST:PORT or PORT@HOST")
		}
		return "tcp", net.JoinHostPort(host, port), nil
	}
	// A plain host:port (an IPv6 literal has colons of its own).
	if _, _, err := net.SplitHostPort(s); err == nil {
		return "tcp", s, nil
	}
	return bad("unknown kind " + kind)
}

// Listen opens a listening socket for a milter address (ParseAddress).
// A Unix socket left behind by an earlier run is removed first; any
// other file at the path is an error, never removed.
func Listen(address string) (net.Listener, error) {
	network, addr, err := ParseAddress(address)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if fi, err := os.Lstat(addr); err == nil {
			if fi.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("milter: %s exists and is not a socket", addr)
			}
			if c, err := net.Dial("unix", addr); err == nil {
				c.Close()
				return nil, fmt.Errorf("milter: %s: a server is listening there", addr)
			}
			_ = os.Remove(addr)
		}
	}
	return net.Listen(network, addr)
}
