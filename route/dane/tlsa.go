package dane

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// ErrSyntax is wrapped by the errors of ParseRecord.
var ErrSyntax = errors.New("dane: bad TLSA record")

// Certificate usages, selectors and matching types (RFC 6698 §2.1,
// RFC 7218 acronyms).
const (
	PKIXTA = 0
	PKIXEE = 1
	DANETA = 2
	DANEEE = 3

	SelectorCert = 0
	SelectorSPKI = 1

	MatchFull   = 0
	MatchSHA256 = 1
	MatchSHA512 = 2
)

// maxData bounds the data of a record: a full certificate in a TLSA
// record is already unusual.
const maxData = 64 << 10

// Record is one TLSA record.
type Record struct {
	Usage        uint8
	Selector     uint8
	MatchingType uint8
	Data         []byte
}

// ParseRecord reads the presentation form "usage selector matching
// hex-data"; the hex data may be split by white space, as in zone files.
func ParseRecord(s string) (Record, error) {
	f := strings.Fields(s)
	if len(f) < 4 {
		return Record{}, fmt.Errorf("%w: %q: want usage, selector, matching type and data", ErrSyntax, s)
	}
	var nums [3]uint8
	for i := range nums {
		n, err := strconv.ParseUint(f[i], 10, 8)
		if err != nil {
			return Record{}, fmt.Errorf("%w: %q is not a number from 0 to 255", ErrSyntax, f[i])
		}
		nums[i] = uint8(n)
	}
	h := strings.Join(f[3:], "")
	if len(h) > 2*maxData {
		return Record{}, fmt.Errorf("%w: data longer than %d bytes", ErrSyntax, maxData)
	}
	data, err := hex.DecodeString(h)
	if err != nil || len(data) == 0 {
		return Record{}, fmt.Errorf("%w: data is not hexadecimal", ErrSyntax)
	}
	return Record{Usage: nums[0], Selector: nums[1], MatchingType: nums[2], Data: data}, nil
}

// FromRR converts miekg/dns's TLSA record; a record whose data is not
// hexadecimal gets no data (and is not usable).
func FromRR(rr *dns.TLSA) Record {
	data, _ := hex.DecodeString(rr.Certificate)
	return Record{Usage: rr.Usage, Selector: rr.Selector, MatchingType: rr.MatchingType, Data: data}
}

// String returns the presentation form.
func (r Record) String() string {
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, hex.EncodeToString(r.Data))
}

// Usable reports a record SMTP can use (RFC 7672 §3.1): DANE-TA or
// DANE-EE, a known selector, a known matching type and a digest of the
// right length.
func (r Record) Usable() bool {
	if r.Usage != DANETA && r.Usage != DANEEE || r.Selector > SelectorSPKI {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return len(r.Data) > 0
	case MatchSHA256:
		return len(r.Data) == sha256.Size
	case MatchSHA512:
		return len(r.Data) == sha512.Size
	}
	return false
}

// Matches reports whether cert matches the record's selector and
// matching type (its usage is not looked at).
func (r Record) Matches(cert *x509.Certificate) bool {
	if cert == nil {
		return false
	}
	var sel []byte
	switch r.Selector {
	case SelectorCert:
		sel = cert.Raw
	case SelectorSPKI:
		sel = cert.RawSubjectPublicKeyInfo
	default:
		return false
	}
	var got []byte
	switch r.MatchingType {
	case MatchFull:
		got = sel
	case MatchSHA256:
		s := sha256.Sum256(sel)
		got = s[:]
	case MatchSHA512:
		s := sha512.Sum512(sel)
		got = s[:]
	default:
		return false
	}
	return len(got) == len(r.Data) && subtle.ConstantTimeCompare(got, r.Data) == 1
}

// NewRecord makes the record of cert for a usage, selector and matching
// type, as a zone's administrator publishes it.
func NewRecord(cert *x509.Certificate, usage, selector, matching uint8) Record {
	r := Record{Usage: usage, Selector: selector, MatchingType: matching}
	sel := cert.Raw
	if selector == SelectorSPKI {
		sel = cert.RawSubjectPublicKeyInfo
	}
	switch matching {
	case MatchSHA256:
		s := sha256.Sum256(sel)
		r.Data = s[:]
	case MatchSHA512:
		s := sha512.Sum512(sel)
		r.Data = s[:]
	default:
		r.Data = append([]byte(nil), sel...)
	}
	return r
}
