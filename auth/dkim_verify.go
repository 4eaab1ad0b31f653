package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postern/postern"
)

// Bounds of DKIM verification.
const (
	// DefaultMaxSignatures is how many DKIM-Signature fields are verified
	// when DKIMVerifyConfig.MaxSignatures is 0; later ones are ignored.
	DefaultMaxSignatures = 5
	// DefaultDKIMTimeout bounds the verification of one message.
	DefaultDKIMTimeout = 20 * time.Second
	// maxSignatureField is the largest DKIM-Signature field verified: a
	// 4096-bit RSA signature and a long h= list fit many times over.
	maxSignatureField = 16 << 10
	// maxSignedHeaders bounds h=: the verifier looks each name up in the
	// header, so a huge list costs time.
	maxSignedHeaders = 256
)

// DKIMVerifyConfig configures a DKIMVerifier. The zero value verifies up to
// 5 signatures per message within 20 s through net.DefaultResolver.
type DKIMVerifyConfig struct {
	// Resolver looks up the selector's key records; nil means
	// net.DefaultResolver.
	Resolver Resolver
	// MaxSignatures bounds the signatures verified per message; 0 means
	// DefaultMaxSignatures. As many more are reported Neutral without being
	// verified; any beyond are only logged.
	MaxSignatures int
	// Timeout bounds the verification of one message; 0 means
	// DefaultDKIMTimeout. Signatures not verified in time are temperror.
	Timeout time.Duration
	// Logger receives one Debug line per signature; nil discards.
	Logger *slog.Logger
}

// DKIMVerifier verifies the DKIM signatures (RFC 6376) of received
// messages on their exact bytes, with go-msgauth. It is safe for
// concurrent use.
type DKIMVerifier struct {
	res     Resolver
	max     int
	timeout time.Duration
	log     *slog.Logger
}

// NewDKIMVerifier validates cfg and returns a verifier.
func NewDKIMVerifier(cfg DKIMVerifyConfig) (*DKIMVerifier, error) {
	if cfg.MaxSignatures < 0 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative DKIM bound", ErrConfig)
	}
	v := &DKIMVerifier{res: orDefaultResolver(cfg.Resolver), max: cfg.MaxSignatures, timeout: cfg.Timeout,
		log: orDiscard(cfg.Logger)}
	if v.max == 0 {
		v.max = DefaultMaxSignatures
	}
	if v.timeout == 0 {
		v.timeout = DefaultDKIMTimeout
	}
	return v, nil
}

// DKIMResult is the outcome for one DKIM-Signature field.
type DKIMResult struct {
	// Status is Pass, Fail (the signature or body hash does not verify),
	// Policy (a body length limit, l=, which we do not accept), Neutral
	// (not verified: over MaxSignatures), TempError (the key could not be
	// fetched now) or PermError (a malformed signature or key record, an
	// unsigned From, a revoked key).
	Status Status
	// Domain is the signing domain (d=, the SDID), Selector the s= tag.
	Domain   string
	Selector string
	// Identifier is the AUID (i=), "@"+Domain when absent.
	Identifier string
	// Algorithm is the a= tag, e.g. "rsa-sha256".
	Algorithm string
	// BPrefix is the start of the signature (b=), which tells signatures of
	// the same domain apart in Authentication-Results (RFC 6008).
	BPrefix string
	// Reason says why the signature did not pass.
	Reason string
}

// DKIMResultsKey holds the []DKIMResult of the message in Txn.Values, set
// by VerifyFilter.
var DKIMResultsKey = postern.NewKey[[]DKIMResult]("auth.dkim")

// sigField is one DKIM-Signature field found in the header.
type sigField struct {
	index int // among all fields
	tags  map[string]string
	skip  string // why it is not handed to the library, "" when it is
}

// Verify verifies the first MaxSignatures DKIM-Signature fields of m on
// the bytes as received (m.NewReader). It returns one result per
// signature, in header order (up to twice MaxSignatures, the later ones
// Neutral), and none for an unsigned message. It never fails: a key that
// cannot be fetched is a TempError, a message that runs out of time makes
// the unfinished signatures TempError.
func (v *DKIMVerifier) Verify(ctx context.Context, m *postern.Message) []DKIMResult {
	fields := m.Fields()
	var sigs []sigField
	var skipped []DKIMResult
	ignored := 0
	for i, f := range fields {
		if !strings.EqualFold(f.Name, "DKIM-Signature") {
			continue
		}
		switch {
		case len(sigs) < v.max:
			sigs = append(sigs, screenSignature(i, f))
		case len(skipped) < v.max:
			r := screenSignature(i, f).result()
			r.Status, r.Reason = Neutral, fmt.Sprintf("not verified: over the limit of %d signatures", v.max)
			skipped = append(skipped, r)
		default:
			ignored++
		}
	}
	if len(sigs) == 0 {
		return nil
	}
	if len(skipped) > 0 {
		v.log.LogAttrs(ctx, slog.LevelInfo, "dkim signatures not verified",
			slog.Int("verified", len(sigs)), slog.Int("skipped", len(skipped)+ignored))
	}

	results := make([]DKIMResult, len(sigs))
	var handed []int // indexes into sigs of the signatures the library sees
	drop := map[int]bool{}
	for i, s := range sigs {
		results[i] = s.result()
		if s.skip != "" {
			results[i].Status, results[i].Reason = PermError, s.skip
			drop[s.index] = true
			continue
		}
		handed = append(handed, i)
	}
	if len(handed) > 0 {
		v.verify(ctx, m, drop, handed, sigs, results)
	}
	for _, r := range results {
		v.log.LogAttrs(ctx, slog.LevelDebug, "dkim verify", slog.String("domain", r.Domain),
			slog.String("selector", r.Selector), slog.String("result", string(r.Status)),
			slog.String("reason", r.Reason))
	}
	return append(results, skipped...)
}

// verify runs go-msgauth on the message, without the fields in drop, and
// fills in the results of the handed signatures.
func (v *DKIMVerifier) verify(ctx context.Context, m *postern.Message, drop map[int]bool, handed []int, sigs []sigField, results []DKIMResult) {
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	cr := &ctxReader{ctx: ctx, r: verifyStream(m, drop)}
	verifs, err := dkim.VerifyWithOptions(cr, &dkim.VerifyOptions{
		LookupTXT:        txtLookup(ctx, v.res),
		MaxVerifications: len(handed),
	})
	if errors.Is(err, dkim.ErrTooManySignatures) {
		err = nil // the library saw signatures our header parse did not; only ours count
	}
	for k, i := range handed {
		r := &results[i]
		switch {
		case cr.cut:
			r.Status, r.Reason = TempError, fmt.Sprintf("verification not finished within %v", v.timeout)
		case err != nil:
			r.Status, r.Reason = PermError, "message unreadable: "+trimDKIMPrefix(err.Error())
		case k >= len(verifs) || verifs[k] == nil:
			r.Status, r.Reason = PermError, "signature not seen by the verifier"
		default:
			r.Status, r.Reason = dkimStatus(verifs[k].Err)
			if _, ok := sigs[i].tags["l"]; ok && r.Status == Fail {
				// go-msgauth refuses l= outright: a signature that may be
				// valid but that we do not accept (RFC 8601 §2.7.1).
				r.Status = Policy
			}
			if r.Domain == "" {
				r.Domain = verifs[k].Domain
			}
		}
	}
}

// verifyStream returns the received bytes without the dropped fields
// (absurd signatures; a signature that covered one of them would fail, but
// signing another DKIM-Signature field is rare), and with a blank line
// added when the message has no body: go-msgauth needs the end of the
// header, and an empty body hashes the same with or without it (RFC 6376
// §3.4.3, §3.4.4).
func verifyStream(m *postern.Message, drop map[int]bool) io.Reader {
	var tail io.Reader = strings.NewReader("")
	if m.BodyOffset() >= m.Size() {
		tail = strings.NewReader("\r\n")
	}
	if len(drop) == 0 {
		return io.MultiReader(m.NewReader(), tail)
	}
	var hdr bytes.Buffer
	var end int64
	for i, f := range m.Fields() {
		end += int64(len(f.Raw))
		if !drop[i] {
			hdr.Write(f.Raw)
		}
	}
	return io.MultiReader(&hdr, io.NewSectionReader(m.ReaderAt(), end, m.Size()-end), tail)
}

// screenSignature reads the tags of a DKIM-Signature field and says whether
// it is too large to hand to the library.
func screenSignature(index int, f postern.Field) sigField {
	s := sigField{index: index, tags: parseTags(f.Value())}
	switch {
	case len(f.Raw) > maxSignatureField:
		s.skip = fmt.Sprintf("signature field of %d bytes exceeds %d", len(f.Raw), maxSignatureField)
	case strings.Count(s.tags["h"], ":") >= maxSignedHeaders:
		s.skip = fmt.Sprintf("more than %d signed header fields", maxSignedHeaders)
	}
	return s
}

func (s sigField) result() DKIMResult {
	r := DKIMResult{Domain: s.tags["d"], Selector: s.tags["s"], Identifier: s.tags["i"], Algorithm: s.tags["a"]}
	if r.Identifier == "" && r.Domain != "" {
		r.Identifier = "@" + r.Domain
	}
	if b := s.tags["b"]; len(b) > 8 {
		r.BPrefix = b[:8]
	} else {
		r.BPrefix = b
	}
	return r
}

// parseTags reads a DKIM tag-list (RFC 6376 §3.2) leniently: white space
// is removed from values, the first of duplicate tags wins, malformed
// pieces are skipped. It only feeds results and limits; the library does
// the strict parse.
func parseTags(v string) map[string]string {
	tags := make(map[string]string)
	for p := range strings.SplitSeq(v, ";") {
		k, val, ok := strings.Cut(p, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			continue
		}
		if _, dup := tags[k]; !dup {
			tags[k] = stripSpace(val)
		}
	}
	return tags
}

func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

// dkimStatus maps a go-msgauth verification error to a result.
func dkimStatus(err error) (Status, string) {
	switch {
	case err == nil:
		return Pass, ""
	case dkim.IsTempFail(err):
		return TempError, trimDKIMPrefix(err.Error())
	case dkim.IsPermFail(err):
		return PermError, trimDKIMPrefix(err.Error())
	}
	return Fail, trimDKIMPrefix(err.Error())
}

func trimDKIMPrefix(s string) string { return strings.TrimPrefix(s, "dkim: ") }

// ctxReader ends the stream once ctx is done, so hashing a large body
// stops at the deadline. It ends it with EOF, not an error: go-msgauth
// leaves goroutines blocked when its reader fails while several
// signatures are being verified. cut records that the stream was cut
// short, which makes every result void.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	cut bool
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		c.cut = true
		return 0, io.EOF
	}
	return c.r.Read(p)
}
