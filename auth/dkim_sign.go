package auth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postern/postern"
)

// DefaultSignedHeaders returns the fields signed when
// DKIMSignConfig.Headers is nil: those RFC 6376 §5.4.1 recommends, the
// MIME fields, and List-Unsubscribe-Post (RFC 8058 §4 requires it signed).
// A name is signed once for each time it occurs; names absent from a
// message are left out.
func DefaultSignedHeaders() []string {
	return []string{
		"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID", "Sender",
		"In-Reply-To", "References",
		"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Message-ID",
		"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-ID", "Content-Description",
		"List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Subscribe",
		"List-Post", "List-Owner", "List-Archive",
	}
}

// DefaultOversignedHeaders returns the fields signed once more than they
// occur when DKIMSignConfig.Oversign is nil, so that a field of that name
// added on the way breaks the signature (RFC 6376 §8.15): a second From is
// the classic way to make a signed message show another author.
func DefaultOversignedHeaders() []string { return []string{"From"} }

// DKIMKey is one signing key: the domain (d=), the selector (s=) under
// which its public key is published, and the private key, an
// *rsa.PrivateKey of at least 1024 bits or an ed25519.PrivateKey.
type DKIMKey struct {
	Domain   string
	Selector string
	Signer   crypto.Signer
}

// DKIMSignConfig configures a DKIMSigner. Keys is required; the zero value
// of every other field is its default: relaxed/relaxed canonicalization,
// DefaultSignedHeaders with From oversigned, no expiry.
type DKIMSignConfig struct {
	// Keys are the signing keys. A message is signed with every key of the
	// From field's domain or, when there is none, of its nearest parent
	// domain that has keys (d=example.com for news.example.com, aligned
	// under DMARC's relaxed mode). Several keys of one domain (RSA and
	// Ed25519, RFC 8463 §4) give several signatures.
	Keys []DKIMKey
	// Headers are the fields to sign; nil means DefaultSignedHeaders. It
	// must contain From.
	Headers []string
	// Oversign names fields signed once more than they occur; nil means
	// DefaultOversignedHeaders, an empty slice none.
	Oversign []string
	// HeaderCanonicalization and BodyCanonicalization are "relaxed" (the
	// default, also for "") or "simple" (RFC 6376 §3.4).
	HeaderCanonicalization string
	BodyCanonicalization   string
	// Expiration, if not 0, sets x= that long after signing.
	Expiration time.Duration
	// Now is the clock for x=; nil means time.Now. (t= is set by go-msgauth
	// from the system clock.)
	Now func() time.Time
	// Logger receives one Debug line per signature; nil discards.
	Logger *slog.Logger
}

// DKIMSigner signs messages (RFC 6376, RFC 8463) with go-msgauth. It is
// immutable and safe for concurrent use.
type DKIMSigner struct {
	keys     map[string][]DKIMKey
	headers  []string
	oversign map[string]bool
	hc, bc   dkim.Canonicalization
	expire   time.Duration
	now      func() time.Time
	log      *slog.Logger
}

// NewDKIMSigner validates cfg and returns a signer.
func NewDKIMSigner(cfg DKIMSignConfig) (*DKIMSigner, error) {
	if len(cfg.Keys) == 0 {
		return nil, fmt.Errorf("%w: DKIM signer needs at least one key", ErrConfig)
	}
	s := &DKIMSigner{keys: make(map[string][]DKIMKey), headers: slices.Clone(cfg.Headers), oversign: make(map[string]bool),
		expire: cfg.Expiration, now: cfg.Now, log: orDiscard(cfg.Logger)}
	for _, k := range cfg.Keys {
		d := normDomain(k.Domain)
		switch {
		case d == "" || k.Selector == "":
			return nil, fmt.Errorf("%w: DKIM key needs a domain and a selector", ErrConfig)
		case strings.ContainsAny(k.Selector, "; \t\r\n") || strings.ContainsAny(d, "; \t\r\n"):
			return nil, fmt.Errorf("%w: bad DKIM domain %q or selector %q", ErrConfig, k.Domain, k.Selector)
		case k.Signer == nil:
			return nil, fmt.Errorf("%w: DKIM key %s._domainkey.%s has no private key", ErrConfig, k.Selector, d)
		}
		if err := checkSigner(k.Signer); err != nil {
			return nil, fmt.Errorf("%w: %s._domainkey.%s: %w", ErrConfig, k.Selector, d, err)
		}
		k.Domain = d
		s.keys[d] = append(s.keys[d], k)
	}
	if s.headers == nil {
		s.headers = DefaultSignedHeaders()
	}
	hasFrom := false
	for _, h := range s.headers {
		if h == "" || strings.ContainsAny(h, ": \t\r\n") {
			return nil, fmt.Errorf("%w: bad header field name %q to sign", ErrConfig, h)
		}
		hasFrom = hasFrom || strings.EqualFold(h, "From")
	}
	if !hasFrom {
		return nil, fmt.Errorf("%w: the signed headers must include From (RFC 6376 §5.4)", ErrConfig)
	}
	over := cfg.Oversign
	if over == nil {
		over = DefaultOversignedHeaders()
	}
	for _, h := range over {
		s.oversign[strings.ToLower(h)] = true
	}
	var err error
	if s.hc, err = canonicalization(cfg.HeaderCanonicalization); err != nil {
		return nil, err
	}
	if s.bc, err = canonicalization(cfg.BodyCanonicalization); err != nil {
		return nil, err
	}
	if s.expire < 0 {
		return nil, fmt.Errorf("%w: negative DKIM expiration", ErrConfig)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

func canonicalization(c string) (dkim.Canonicalization, error) {
	switch strings.ToLower(c) {
	case "", "relaxed":
		return dkim.CanonicalizationRelaxed, nil
	case "simple":
		return dkim.CanonicalizationSimple, nil
	}
	return "", fmt.Errorf("%w: DKIM canonicalization %q (want relaxed or simple)", ErrConfig, c)
}

// checkSigner accepts RSA keys of at least 1024 bits (RFC 8301 §3.2) and
// Ed25519 keys (RFC 8463).
func checkSigner(k crypto.Signer) error {
	switch pub := k.Public().(type) {
	case *rsa.PublicKey:
		if pub.Size()*8 < 1024 {
			return fmt.Errorf("%w: RSA key of %d bits (at least 1024, better 2048)", ErrKey, pub.Size()*8)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("%w: %T is neither RSA nor Ed25519", ErrKey, pub)
	}
	return nil
}

// KeysFor returns the keys that sign mail from domain: its own, or those of
// its nearest parent domain with keys.
func (s *DKIMSigner) KeysFor(domain string) []DKIMKey {
	d := normDomain(domain)
	for d != "" {
		if ks := s.keys[d]; len(ks) > 0 {
			return ks
		}
		_, d, _ = strings.Cut(d, ".")
	}
	return nil
}

// Sign signs m as it will be rendered (received fields, minus deletions,
// plus the fields added so far, and the body) and adds one DKIM-Signature
// field per key. It returns the signing domain. Filters that edit the
// header after Sign break the signature: sign last.
//
// A message whose From domain has no key returns ErrNoKey; one without a
// usable From field returns an error wrapping ErrFrom.
func (s *DKIMSigner) Sign(ctx context.Context, m *postern.Message) (string, error) {
	from, err := FromDomain(m)
	if err != nil {
		return "", err
	}
	keys := s.KeysFor(from)
	if len(keys) == 0 {
		return "", fmt.Errorf("%w %s", ErrNoKey, from)
	}
	headerKeys := s.headerKeys(m)
	var exp time.Time
	if s.expire > 0 {
		exp = s.now().Add(s.expire)
	}
	signers := make([]*dkim.Signer, 0, len(keys))
	ws := make([]io.Writer, 0, len(keys))
	for _, k := range keys {
		sg, err := dkim.NewSigner(&dkim.SignOptions{
			Domain: k.Domain, Selector: k.Selector, Signer: k.Signer,
			HeaderCanonicalization: s.hc, BodyCanonicalization: s.bc,
			HeaderKeys: headerKeys, Expiration: exp,
		})
		if err != nil {
			closeAll(signers)
			return "", fmt.Errorf("%w: %w", ErrSign, err)
		}
		signers = append(signers, sg)
		ws = append(ws, sg)
	}
	w := &ctxWriter{ctx: ctx, w: io.MultiWriter(ws...)}
	err = m.Render(w)
	if err == nil && m.BodyOffset() >= m.Size() {
		_, err = io.WriteString(w, "\r\n") // see verifyStream
	}
	fields := make([]string, len(signers))
	for i, sg := range signers {
		if cerr := sg.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if err == nil {
			fields[i] = sg.Signature()
		}
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrSign, err)
	}
	for i, f := range fields {
		// go-msgauth writes "DKIM-Signature: a=...": keep the bytes after
		// the name and its one space so Render writes them back exactly
		// (simple header canonicalization hashes the field as written).
		v := strings.TrimPrefix(f, "DKIM-Signature: ")
		m.AddHeader("DKIM-Signature", strings.TrimRight(v, "\r\n"))
		s.log.LogAttrs(ctx, slog.LevelDebug, "dkim signed", slog.String("domain", keys[i].Domain),
			slog.String("selector", keys[i].Selector))
	}
	return keys[0].Domain, nil
}

func closeAll(ss []*dkim.Signer) {
	for _, s := range ss {
		s.Close()
	}
}

// headerKeys lists the h= names for m: each configured name once per
// occurrence in the rendered header, oversigned names once more.
func (s *DKIMSigner) headerKeys(m *postern.Message) []string {
	counts := make(map[string]int)
	for _, f := range m.Fields() {
		counts[strings.ToLower(f.Name)]++
	}
	for _, e := range m.Edits() {
		switch e.Kind {
		case postern.EditAdd:
			counts[strings.ToLower(e.Name)]++
		case postern.EditDelete:
			counts[strings.ToLower(e.Name)]--
		}
	}
	var keys []string
	for _, h := range s.headers {
		n := max(counts[strings.ToLower(h)], 0)
		if s.oversign[strings.ToLower(h)] {
			n++
		}
		for range n {
			keys = append(keys, h)
		}
	}
	return keys
}

type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// ParsePrivateKey reads a DKIM private key from PEM: an RSA key as PKCS #1
// ("RSA PRIVATE KEY") or PKCS #8 ("PRIVATE KEY"), an Ed25519 key as PKCS #8.
// Encrypted keys and other algorithms are refused.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrKey)
	}
	if _, ok := block.Headers["Proc-Type"]; ok {
		return nil, fmt.Errorf("%w: encrypted PEM keys are not supported", ErrKey)
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM block %q (want RSA PRIVATE KEY or PRIVATE KEY)", ErrKey, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T cannot sign", ErrKey, key)
	}
	if err := checkSigner(signer); err != nil {
		return nil, err
	}
	return signer, nil
}

// LoadPrivateKey reads a PEM private key file (see ParsePrivateKey).
func LoadPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// Key algorithms for GenerateKey.
const (
	KeyRSA     = "rsa"
	KeyEd25519 = "ed25519"
)

// GenerateKey makes a DKIM key pair: alg is KeyRSA (bits 0 means 2048;
// 1024 to 8192 allowed) or KeyEd25519 (bits 0 or 256). It returns the
// private key as PKCS #8 PEM and the text of the DNS TXT record to publish
// at <selector>._domainkey.<domain>, such as "v=DKIM1; k=rsa; p=MIIB...".
// A zone file needs the text split into strings of at most 255 octets
// (SplitTXT).
func GenerateKey(alg string, bits int) (keyPEM []byte, txt string, err error) {
	var priv crypto.Signer
	switch strings.ToLower(alg) {
	case KeyRSA:
		if bits == 0 {
			bits = 2048
		}
		if bits < 1024 || bits > 8192 {
			return nil, "", fmt.Errorf("%w: RSA key of %d bits (1024 to 8192)", ErrKey, bits)
		}
		priv, err = rsa.GenerateKey(rand.Reader, bits)
	case KeyEd25519:
		if bits != 0 && bits != 256 {
			return nil, "", fmt.Errorf("%w: Ed25519 keys have 256 bits, not %d", ErrKey, bits)
		}
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, "", fmt.Errorf("%w: algorithm %q (want rsa or ed25519)", ErrKey, alg)
	}
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrKey, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrKey, err)
	}
	txt, err = DKIMRecord(priv.Public())
	if err != nil {
		return nil, "", err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), txt, nil
}

// DKIMRecord returns the DNS TXT record text that publishes pub (RFC 6376
// §3.6.1): an RSA key as SubjectPublicKeyInfo, an Ed25519 key as its 32
// raw octets (RFC 8463 §4.2).
func DKIMRecord(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrKey, err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("%w: %T is neither RSA nor Ed25519", ErrKey, pub)
}

// SplitTXT splits a record text into the character-strings of one TXT
// record (at most 255 octets each, RFC 1035 §3.3); resolvers join them
// again (RFC 6376 §3.6.2.2).
func SplitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

// normDomain lower-cases a domain and drops a trailing dot.
func normDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}
