package dnsbl

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Exchanger sends one DNS query to one server and returns the response.
// The Checker chooses the server, sets a deadline on ctx for each attempt,
// retries and validates the response; an Exchanger only moves messages.
// The default one is miekg/dns's Client (see Config.Net). Implementations
// must be safe for concurrent use and must not keep m or the response.
type Exchanger interface {
	Exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error)
}

// clientExchanger is the default Exchanger: UDP with a retry over TCP when
// the answer is truncated (RFC 7766 §5), or TCP only.
type clientExchanger struct {
	udp, tcp *dns.Client
}

func newClientExchanger(network string, timeout time.Duration) *clientExchanger {
	// The context deadline set per attempt is what bounds a query; the
	// client timeout only backs it up.
	x := &clientExchanger{tcp: &dns.Client{Net: "tcp", Timeout: timeout}}
	if network == "udp" {
		x.udp = &dns.Client{Net: "udp", Timeout: timeout}
	}
	return x
}

func (x *clientExchanger) Exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	if x.udp != nil {
		r, err := exchangeWith(ctx, x.udp, m, server)
		if err != nil || !r.Truncated {
			return r, err
		}
	}
	return exchangeWith(ctx, x.tcp, m, server)
}

func exchangeWith(ctx context.Context, cl *dns.Client, m *dns.Msg, server string) (*dns.Msg, error) {
	co, err := cl.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	// miekg/dns honours the context's deadline but not its cancellation:
	// a cancelled check must not wait for the deadline.
	stop := context.AfterFunc(ctx, func() { co.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r, _, err := cl.ExchangeWithConnContext(ctx, m, co)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return r, nil
}

// normalizeResolver accepts "addr:port" or a bare address (port 53).
func normalizeResolver(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("%w: resolver %q is not an address or address:port", ErrConfig, s)
	}
	return net.JoinHostPort(a.String(), "53"), nil
}
