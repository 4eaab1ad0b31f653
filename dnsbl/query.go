package dnsbl

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

const hexDigits = "0123456789abcdef"

// QueryName returns the fully qualified name (with the trailing dot) under
// which zone lists ip, as RFC 5782 §2.1 and §2.4 define it: an IPv4
// address's octets reversed ("2.0.0.127.zen.spamhaus.org."), an IPv6
// address's 32 nibbles reversed, in lower-case hex. IPv4-mapped IPv6
// addresses are queried as IPv4. The zone is normalised as in Zone.Name.
func QueryName(ip netip.Addr, zone string) (string, error) {
	z, err := normalizeName(zone)
	if err != nil {
		return "", fmt.Errorf("%w: zone %q: %v", ErrConfig, zone, err)
	}
	ip = ip.Unmap()
	if !ip.IsValid() {
		return "", ErrInvalidAddress
	}
	name := ipQueryName(ip, z)
	if len(name) > maxNameLen+1 {
		return "", fmt.Errorf("%w: query name for zone %s is too long", ErrConfig, z)
	}
	return name, nil
}

// DomainQueryName returns the fully qualified name under which zone lists
// domain (RFC 5782 §3: the domain prepended to the zone).
func DomainQueryName(domain, zone string) (string, error) {
	z, err := normalizeName(zone)
	if err != nil {
		return "", fmt.Errorf("%w: zone %q: %v", ErrConfig, zone, err)
	}
	d, err := normalizeName(domain)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalidDomain, domain, err)
	}
	name, ok := domainQueryName(d, z)
	if !ok {
		return "", fmt.Errorf("%w: %s.%s is longer than a DNS name can be", ErrInvalidDomain, d, z)
	}
	return name, nil
}

// ipQueryName builds the name; ip is unmapped and valid, zone normalised.
func ipQueryName(ip netip.Addr, zone string) string {
	var b strings.Builder
	if ip.Is4() {
		a := ip.As4()
		b.Grow(16 + len(zone) + 1)
		for i := 3; i >= 0; i-- {
			writeUint8(&b, a[i])
			b.WriteByte('.')
		}
	} else {
		a := ip.As16()
		b.Grow(64 + len(zone) + 1)
		for i := 15; i >= 0; i-- {
			b.WriteByte(hexDigits[a[i]&0xf])
			b.WriteByte('.')
			b.WriteByte(hexDigits[a[i]>>4])
			b.WriteByte('.')
		}
	}
	b.WriteString(zone)
	b.WriteByte('.')
	return b.String()
}

func writeUint8(b *strings.Builder, v uint8) {
	if v >= 100 {
		b.WriteByte('0' + v/100)
	}
	if v >= 10 {
		b.WriteByte('0' + v/10%10)
	}
	b.WriteByte('0' + v%10)
}

// domainQueryName builds <domain>.<zone>.; both are normalised. It fails
// when the result is longer than a DNS name can be.
func domainQueryName(domain, zone string) (string, bool) {
	if len(domain)+1+len(zone) > maxNameLen {
		return "", false
	}
	return domain + "." + zone + ".", true
}

// answer is what a lookup learned: the A records that are DNSBL return
// codes (none: not listed) or the TXT text, and how long it may be cached.
type answer struct {
	addrs []netip.Addr
	txt   string
	// ttl in seconds, as received; cacheable is false when the response
	// gave no TTL to honour (a negative answer without SOA, RFC 2308 §5).
	ttl       uint32
	negative  bool
	cacheable bool
}

// maxChain bounds the CNAME chain followed inside one response.
const maxChain = 8

// decodeAnswer interprets a response to the query (qname, qtype). It
// returns a lookup error (ErrLookup) for anything but a well-formed
// NOERROR or NXDOMAIN answer to this very question, and ErrBadAnswer for
// an answer that no DNSBL may give: an A record outside 127.0.0.0/8 (RFC
// 5782 §2.3; a lapsed zone whose domain now resolves to a parking page
// would otherwise list everyone) or in 127.255.255.0/24 (Spamhaus: query
// refused), or a record of the wrong type. A dangling CNAME is an empty
// answer (RFC 2308 §2.2). qtype is dns.TypeA or dns.TypeTXT.
func decodeAnswer(qname string, qtype uint16, m *dns.Msg) (answer, error) {
	if m == nil {
		return answer{}, fmt.Errorf("%w: no response", ErrLookup)
	}
	if !m.Response || m.Opcode != dns.OpcodeQuery {
		return answer{}, fmt.Errorf("%w: not a query response", ErrLookup)
	}
	if len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, qname) ||
		m.Question[0].Qtype != qtype || m.Question[0].Qclass != dns.ClassINET {
		return answer{}, fmt.Errorf("%w: response to another question", ErrLookup)
	}
	if m.Truncated {
		return answer{}, fmt.Errorf("%w: truncated response", ErrLookup)
	}
	switch m.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return negativeAnswer(m), nil
	default:
		return answer{}, fmt.Errorf("%w: %s", ErrLookup, rcodeName(m.Rcode))
	}

	// Follow the CNAME chain from qname (RFC 1034 §3.6.2); records owned
	// by other names are not about our question and are ignored.
	var a answer
	name := qname
	ttl := uint32(1<<32 - 1)
	var txts []string
	for hop := 0; ; hop++ {
		next := ""
		for _, rr := range m.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, name) || h.Class != dns.ClassINET {
				continue
			}
			switch rr := rr.(type) {
			case *dns.CNAME:
				if next == "" {
					next = rr.Target
					ttl = min(ttl, h.Ttl)
				}
			case *dns.A:
				if qtype != dns.TypeA {
					return answer{}, fmt.Errorf("%w: A record in answer to TXT query", ErrBadAnswer)
				}
				ip, _ := netip.AddrFromSlice(rr.A.To4())
				if !ip.Is4() || !loopback8.Contains(ip) {
					return answer{}, fmt.Errorf("%w: %s is outside 127.0.0.0/8", ErrBadAnswer, ip)
				}
				if refusedNet.Contains(ip) {
					return answer{}, fmt.Errorf("%w: %s (%s)", ErrBadAnswer, ip, refusedMeaning(ip))
				}
				a.addrs = append(a.addrs, ip)
				ttl = min(ttl, h.Ttl)
			case *dns.TXT:
				if qtype != dns.TypeTXT {
					return answer{}, fmt.Errorf("%w: TXT record in answer to A query", ErrBadAnswer)
				}
				txts = append(txts, strings.Join(rr.Txt, ""))
				ttl = min(ttl, h.Ttl)
			case *dns.RRSIG:
			default:
				return answer{}, fmt.Errorf("%w: %s record in answer to %s query", ErrBadAnswer,
					dns.TypeToString[h.Rrtype], dns.TypeToString[qtype])
			}
		}
		if len(a.addrs) > 0 || len(txts) > 0 || next == "" {
			break
		}
		if hop == maxChain {
			return answer{}, fmt.Errorf("%w: CNAME chain longer than %d", ErrLookup, maxChain)
		}
		name = next
	}
	if len(a.addrs) == 0 && len(txts) == 0 {
		return negativeAnswer(m), nil // NODATA, RFC 2308 §2.2
	}
	a.txt = sanitizeTXT(strings.Join(txts, "; "))
	a.ttl, a.cacheable = ttl, true
	return a, nil
}

// negativeAnswer takes the negative TTL from the SOA in the authority
// section: the smaller of its TTL and its MINIMUM field (RFC 2308 §5).
// Without an SOA the answer is not cached.
func negativeAnswer(m *dns.Msg) answer {
	a := answer{negative: true}
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			a.ttl, a.cacheable = min(soa.Hdr.Ttl, soa.Minttl), true
			break
		}
	}
	return a
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("rcode %d", rc)
}

// refusedMeaning names the Spamhaus error codes (Spamhaus "DNSBL usage"
// documentation: the query was not answered).
func refusedMeaning(ip netip.Addr) string {
	switch ip.As4()[3] {
	case 252:
		return "typing error in DNSBL name"
	case 254:
		return "query via public/open resolver"
	case 255:
		return "excessive number of queries"
	}
	return "query refused"
}

// maxTXT bounds the TXT text put into a reply: an SMTP reply line is at
// most 512 bytes (RFC 5321 §4.5.3.1.5).
const maxTXT = 200

// sanitizeTXT makes TXT text fit for a reply line: miekg/dns gives the
// presentation form, so \DDD and \X escapes are undone, then every byte
// outside printable US-ASCII becomes '?' and the text is cut at maxTXT.
func sanitizeTXT(s string) string {
	out := make([]byte, 0, min(len(s), maxTXT))
	for i := 0; i < len(s) && len(out) < maxTXT; i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
				v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
				c = byte(min(v, 255))
				if v > 255 {
					c = 0
				}
				i += 3
			} else {
				c = s[i+1]
				i++
			}
		}
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out = append(out, c)
	}
	return strings.TrimSpace(string(out))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
