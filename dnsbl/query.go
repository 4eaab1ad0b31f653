package dnsbl

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/postern/postern/route/resolver"
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
// codes (none: not listed), or the TXT text.
type answer struct {
	addrs []netip.Addr
	txt   string
}

// readAnswer interprets the resolver's answer to an A or TXT query. A
// lookup error becomes ErrLookup; NXDOMAIN and "no data" (RFC 2308 §2.2,
// a dangling CNAME included) mean "not listed". An A record outside
// 127.0.0.0/8 is ErrBadAnswer (RFC 5782 §2.3: a lapsed zone whose domain
// now resolves to a parking page would otherwise list everyone), and so
// is one in 127.255.255.0/24 (Spamhaus: query refused). Records of other
// types do not answer the question; the resolver leaves them out.
func readAnswer(a resolver.Answer, err error) (answer, error) {
	if err != nil {
		return answer{}, fmt.Errorf("%w: %w", ErrLookup, err)
	}
	var out answer
	var txts []string
	for _, rr := range a.Records {
		switch rr := rr.(type) {
		case *dns.A:
			ip, _ := netip.AddrFromSlice(rr.A.To4())
			if !ip.Is4() || !loopback8.Contains(ip) {
				return answer{}, fmt.Errorf("%w: %s is outside 127.0.0.0/8", ErrBadAnswer, ip)
			}
			if refusedNet.Contains(ip) {
				return answer{}, fmt.Errorf("%w: %s (%s)", ErrBadAnswer, ip, refusedMeaning(ip))
			}
			out.addrs = append(out.addrs, ip)
		case *dns.TXT:
			txts = append(txts, strings.Join(rr.Txt, ""))
		}
	}
	out.txt = sanitizeTXT(strings.Join(txts, "; "))
	return out, nil
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
