package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/miekg/dns"
)

// ask asks the servers in turn, Attempts rounds, until one gives a
// NOERROR or NXDOMAIN answer to the question, and decodes it.
func (r *Resolver) ask(ctx context.Context, qname string, qtype uint16) (Answer, error) {
	var last error
	for range r.attempts {
		for _, srv := range r.servers {
			if ctx.Err() != nil {
				return Answer{}, ctxErr(ctx, qname, qtype)
			}
			m, err := r.once(ctx, qname, qtype, srv)
			if err == nil {
				return decode(qname, qtype, m)
			}
			last = err
			r.log.LogAttrs(ctx, slog.LevelDebug, "DNS query failed", slog.String("server", srv),
				slog.String("qname", qname), slog.String("qtype", typeName(qtype)), slog.String("error", err.Error()))
		}
	}
	return Answer{}, last
}

// query makes a new query message, with a new ID: a late answer to an
// earlier attempt must not pass for this one.
func query(qname string, qtype uint16, edns bool) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(qname, qtype)
	q.RecursionDesired = true
	// RFC 6840 §5.7: a stub that sets AD in its query gets the AD bit
	// back from a validating resolver, without asking for signatures.
	q.AuthenticatedData = true
	if edns {
		q.SetEdns0(UDPSize, false)
	}
	return q
}

// once makes one attempt at one server, within Timeout.
func (r *Resolver) once(ctx context.Context, qname string, qtype uint16, srv string) (*dns.Msg, error) {
	actx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	q := query(qname, qtype, true)
	m, err := r.send(actx, q, srv)
	if err == nil && m.Rcode == dns.RcodeFormatError && m.IsEdns0() == nil {
		// RFC 6891 §7: a server that does not know EDNS answers FORMERR
		// without an OPT record; ask it again without.
		q = query(qname, qtype, false)
		m, err = r.send(actx, q, srv)
	}
	what := typeName(qtype) + " " + trimDot(qname) + " at " + srv
	if err != nil {
		return nil, transportErr(ctx, actx, what, err)
	}
	if err := check(q, m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadResponse, what, err)
	}
	switch m.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return m, nil
	}
	return nil, fmt.Errorf("%w: %s: %s", ErrServerFailure, what, rcodeName(m.Rcode))
}

// send asks over UDP, and over TCP again when the answer is truncated
// (RFC 7766 §5); over TCP only for Net "tcp".
func (r *Resolver) send(ctx context.Context, q *dns.Msg, srv string) (*dns.Msg, error) {
	if r.udp != nil {
		m, err := exchangeWith(ctx, r.udp, q, srv)
		if err != nil || !m.Truncated {
			return m, err
		}
	}
	return exchangeWith(ctx, r.tcp, q, srv)
}

func exchangeWith(ctx context.Context, cl *dns.Client, q *dns.Msg, srv string) (*dns.Msg, error) {
	co, err := cl.DialContext(ctx, srv)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	// miekg/dns honours the context's deadline but not its cancellation:
	// a cancelled lookup must not wait for the deadline.
	stop := context.AfterFunc(ctx, func() { co.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	m, _, err := cl.ExchangeWithConnContext(ctx, q, co)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// transportErr classifies a failed exchange: timeouts (the attempt's or
// the caller's), network errors, and the rest (a response that did not
// parse, a TCP answer with another ID).
func transportErr(ctx, actx context.Context, what string, err error) error {
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %s: %w", ErrTimeout, what, context.Cause(ctx))
	case actx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w: %s", ErrTimeout, what)
	case errors.As(err, new(*net.OpError)):
		return fmt.Errorf("%w: %s: %v", ErrNetwork, what, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrBadResponse, what, err)
}

// check verifies that m answers q.
func check(q, m *dns.Msg) error {
	switch {
	case !m.Response:
		return errors.New("not a response")
	case m.Opcode != dns.OpcodeQuery:
		return errors.New("not a query response")
	case m.Id != q.Id:
		return errors.New("response ID mismatch")
	case len(m.Question) != 1 || !sameName(m.Question[0].Name, q.Question[0].Name) ||
		m.Question[0].Qtype != q.Question[0].Qtype || m.Question[0].Qclass != dns.ClassINET:
		return errors.New("response to another question")
	case m.Truncated:
		return errors.New("truncated response over TCP")
	}
	return nil
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

// decode reads the answer to qname/qtype from m (NOERROR or NXDOMAIN):
// the records of qtype owned by qname or by the end of its CNAME chain in
// the answer section (RFC 1034 §3.6.2); records owned by other names are
// not about the question and are ignored.
func decode(qname string, qtype uint16, m *dns.Msg) (Answer, error) {
	a := Answer{Name: qname, Type: qtype, Rcode: m.Rcode, Canonical: qname, AD: m.AuthenticatedData, Msg: m}
	ttl := uint32(1<<32 - 1)
	name := qname
	for hop := 0; ; hop++ {
		next := ""
		for _, rr := range m.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || !sameName(h.Name, name) {
				continue
			}
			if h.Rdlength == 0 {
				continue // no data: update syntax (RFC 2136 §2.5), never an answer
			}
			if h.Rrtype == qtype {
				a.Records = append(a.Records, rr)
				ttl = min(ttl, rrTTL(h.Ttl))
			} else if c, ok := rr.(*dns.CNAME); ok && next == "" {
				next = lower(dns.Fqdn(c.Target))
				ttl = min(ttl, rrTTL(h.Ttl))
			}
		}
		if len(a.Records) > 0 || next == "" {
			break
		}
		if hop == maxCNAME || next == qname || a.onChain(next) {
			return Answer{}, fmt.Errorf("%w: %s %s: CNAME chain longer than %d or looping", ErrBadResponse, typeName(qtype), trimDot(qname), maxCNAME)
		}
		name = next
		a.Aliases = append(a.Aliases, name)
	}
	a.Canonical = name
	if len(a.Records) > 0 {
		a.cacheable = true
	} else {
		// A negative answer: the SOA's TTL, at most its MINIMUM field
		// (RFC 2308 §5); without an SOA it is not cached.
		a.negative = true
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl, a.cacheable = min(ttl, rrTTL(soa.Hdr.Ttl), rrTTL(soa.Minttl)), true
				break
			}
		}
		if !a.cacheable {
			ttl = 0
		}
	}
	a.TTL = time.Duration(ttl) * time.Second
	return a, nil
}

// rrTTL reads a TTL: one with the top bit set counts as 0 (RFC 2181 §8).
func rrTTL(t uint32) uint32 {
	if t > 1<<31-1 {
		return 0
	}
	return t
}

// sameName compares names as DNS does: ASCII letters without case.
func sameName(a, b string) bool { return len(a) == len(b) && lower(a) == lower(b) }
