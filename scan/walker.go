package scan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/jhillyerd/enmime/v2"

	"github.com/postern/postern"
)

// WalkerConfig configures a Walker. The zero value is usable.
type WalkerConfig struct {
	Limits Limits
}

// Walker parses messages into their MIME parts, within Limits. It is
// immutable and safe for concurrent use.
type Walker struct {
	lim    Limits
	parser *enmime.Parser
	noFast bool // tests: always the full walk
	// fastWalks counts the messages the fast path took (tests read it).
	fastWalks atomic.Int64

	spools  sync.Pool // *[]byte, WalkMessage's buffers up to maxPooledSpool
	headers sync.Pool // *headerBuilder, the fast path's scratch
}

// Spool buffers: WalkMessage reuses buffers of up to maxPooledSpool
// bytes (ordinary mail fits; a large message's buffer is not held on
// to), at least minSpool so that one fits most messages.
const (
	maxPooledSpool = 1 << 20
	minSpool       = 64 << 10
)

// spoolBuffer returns a buffer of at least n bytes.
func (w *Walker) spoolBuffer(n int64) *[]byte {
	if n <= maxPooledSpool {
		if b, _ := w.spools.Get().(*[]byte); b != nil && int64(cap(*b)) >= n {
			return b
		}
		// None, or too small for this one (dropped): a new one.
		b := make([]byte, max(n, minSpool))
		return &b
	}
	b := make([]byte, n)
	return &b
}

// releaseSpool keeps b for the next message if it is not too large. The
// walk copies what it keeps, so the bytes may be overwritten.
func (w *Walker) releaseSpool(b *[]byte) {
	if cap(*b) <= maxPooledSpool {
		w.spools.Put(b)
	}
}

// NewWalker validates cfg and returns a Walker.
func NewWalker(cfg WalkerConfig) (*Walker, error) {
	lim, err := cfg.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Walker{lim: lim, parser: enmime.NewParser(
		// A broken part is recorded on its parent and skipped; the rest of
		// the message is still walked.
		enmime.SkipMalformedParts(true),
		enmime.MultipartWOBoundaryAsSinglePart(true),
		// Charset detection is costly; a declared charset is believed
		// (RFC 2046 §4.1.2). Undeclared 8-bit text is still detected.
		enmime.DisableCharacterDetection(true),
		enmime.DisableTextConversion(true),
		enmime.SetReadPartErrorPolicy(enmime.AllowCorruptTextPartErrorPolicy),
		enmime.MaxStoredPartErrors(16),
	)}, nil
}

// Limits returns the limits in force, defaults filled in.
func (w *Walker) Limits() Limits { return w.lim }

// Content is a walked message. It is immutable and safe for concurrent
// use; do not modify its slices.
type Content struct {
	// Header is the top-level header as parsed, values not decoded.
	Header textproto.MIMEHeader
	// Subject is the decoded Subject (RFC 2047) in UTF-8.
	Subject string
	// Parts are all entities in document order, depth first: Parts[0] is
	// the message itself, containers (multipart, attached messages) come
	// before their children.
	Parts []Part
	// URLs are the distinct URLs of the text and HTML parts, in order of
	// appearance, at most Limits.MaxURLs.
	URLs []string
	// Size is the size of the raw message.
	Size int64
	// Decoded is the decoded size of all leaves (an attached message's
	// parts counted once more).
	Decoded int64
}

// Part is one MIME entity.
type Part struct {
	// ID names the entity's place in the tree: "0" for the message, "1",
	// "2", … for the parts of a top-level multipart, "2.1" for the first
	// part of part 2. The message inside a message/rfc822 part X is
	// "X.1".
	ID string
	// Parent is the index of the enclosing entity in Content.Parts, -1 for
	// the message.
	Parent int
	// Depth is 0 for the message and grows by one per level.
	Depth int
	// ContentType is the declared media type, lower case, without
	// parameters ("" for a part that declares none: RFC 2045 §5.2 makes
	// that text/plain).
	ContentType string
	// Charset is what the text was converted from: the declared charset,
	// or a detected one when none was declared.
	Charset string
	// Disposition is the Content-Disposition type, lower case.
	Disposition string
	// FileName is the declared file name (Content-Disposition filename or
	// Content-Type name, RFC 2231 and RFC 2047 decoded).
	FileName string
	// Encoding is the Content-Transfer-Encoding, lower case.
	Encoding string
	// Multipart marks a multipart container: its children follow it.
	Multipart bool
	// Message marks an attached message (message/rfc822, message/global)
	// that was walked: its top-level entity is the next part.
	Message bool
	// Sniffed is the media type detected from the decoded content (see
	// Sniff); "" for containers.
	Sniffed string
	// Size is the decoded size in bytes. For text parts it is the size
	// of the text after conversion to UTF-8.
	Size int64
	// SHA256 is the hash of the decoded content (for text parts, of the
	// UTF-8 text).
	SHA256 [sha256.Size]byte
	// Errors are what the parser noticed: malformed base64, a missing
	// boundary, an unknown charset, ….
	Errors []string

	text    string // text parts: UTF-8
	visible string // HTML parts: the text without markup
	data    []byte // other leaves, and text parts whose content is an archive
}

// IsText reports whether the part is text (text/*, or no declared type).
func (p *Part) IsText() bool {
	return !p.Multipart && !p.Message && (p.ContentType == "" || strings.HasPrefix(p.ContentType, "text/"))
}

// Text returns the decoded text of a text part, in UTF-8 (invalid bytes
// replaced by U+FFFD), and true; "" and false for other parts.
func (p *Part) Text() (string, bool) {
	if !p.IsText() {
		return "", false
	}
	return p.text, true
}

// Open returns a reader over the decoded content: the UTF-8 text of a
// text part, the decoded bytes of another leaf, nothing for a container
// (a multipart, or an attached message, whose parts follow it).
func (p *Part) Open() io.Reader {
	if p.IsText() {
		return strings.NewReader(p.text)
	}
	return bytes.NewReader(p.data)
}

// IsAttachment reports whether the part is a leaf with a file name or an
// "attachment" disposition.
func (p *Part) IsAttachment() bool {
	return !p.Multipart && (p.FileName != "" || p.Disposition == "attachment")
}

// searchText is the text keyword rules look at: the visible text of an
// HTML part, the text of other text parts, at most max bytes.
func (p *Part) searchText(maxBytes int) string {
	s := p.text
	if p.ContentType == "text/html" {
		s = p.visible
	}
	return truncUTF8(s, maxBytes)
}

func truncUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Walk reads a message from r and walks it.
func (w *Walker) Walk(ctx context.Context, r io.Reader) (*Content, error) {
	data, err := io.ReadAll(io.LimitReader(r, w.lim.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("scan: read message: %w", err)
	}
	return w.WalkBytes(ctx, data)
}

// WalkMessage walks a spooled message as received (edits are not
// applied). The message is read into a buffer the Walker reuses: the
// Content keeps no reference into it.
func (w *Walker) WalkMessage(ctx context.Context, m *postern.Message) (*Content, error) {
	if m.Size() > w.lim.MaxSize {
		return nil, &LimitError{Limit: LimitSize, Max: w.lim.MaxSize}
	}
	buf := w.spoolBuffer(m.Size())
	defer w.releaseSpool(buf)
	data := (*buf)[:m.Size()]
	n, err := m.ReaderAt().ReadAt(data, 0)
	if err != nil && (err != io.EOF || int64(n) < m.Size()) {
		return nil, fmt.Errorf("scan: read message: %w", err)
	}
	return w.WalkBytes(ctx, data)
}

// WalkBytes walks the message in data. The Content keeps no reference
// into data: every part's text and content is a copy.
func (w *Walker) WalkBytes(ctx context.Context, data []byte) (*Content, error) {
	c, _, err := w.walk(ctx, data, !w.noFast)
	return c, err
}

// walk is WalkBytes; fast allows the fast path for a message that is one
// text entity (see single), and usedFast reports whether it was taken.
func (w *Walker) walk(ctx context.Context, data []byte, fast bool) (c *Content, usedFast bool, err error) {
	if int64(len(data)) > w.lim.MaxSize {
		return nil, false, &LimitError{Limit: LimitSize, Max: w.lim.MaxSize}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, w.lim.Timeout,
		&LimitError{Limit: LimitTime, Max: w.lim.Timeout.Milliseconds()})
	defer cancel()
	st := &walkState{w: w, c: &Content{Size: int64(len(data))}, decodedLeft: w.lim.MaxDecodedBytes}
	// The pre-scan bounds the message on either path, with the same
	// errors; it counts one entity for a message that is one leaf.
	pre, err := prescan(ctx, data, &w.lim, 0, "0", w.lim.MaxParts)
	if err != nil {
		return nil, false, err
	}
	if fast && pre.parts == 1 {
		if usedFast, err = st.single(ctx, data, &pre); err != nil {
			return nil, usedFast, err
		}
		if usedFast {
			w.fastWalks.Add(1)
		}
	}
	if !usedFast {
		if err := st.parse(ctx, data, 0, "0", -1); err != nil {
			return nil, false, err
		}
	}
	if err := ctxErr(ctx); err != nil {
		return nil, usedFast, err
	}
	return st.c, usedFast, nil
}

func ctxErr(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	return context.Cause(ctx)
}

// ctxReader makes enmime's reads fail once the walk's time is up: enmime
// takes no context.
type ctxReader struct {
	ctx context.Context
	r   *bytes.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := ctxErr(c.ctx); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

type walkState struct {
	w           *Walker
	c           *Content
	decodedLeft int64
	urls        map[string]bool
}

// entity pre-scans and parses an attached message and adds its parts.
func (st *walkState) entity(ctx context.Context, data []byte, depth int, id string, parent int) error {
	lim := &st.w.lim
	if _, err := prescan(ctx, data, lim, depth, id, lim.MaxParts-len(st.c.Parts)); err != nil {
		return err
	}
	return st.parse(ctx, data, depth, id, parent)
}

// parse has enmime parse a pre-scanned message (the top one or an
// attached one) and adds its parts.
func (st *walkState) parse(ctx context.Context, data []byte, depth int, id string, parent int) error {
	root, err := st.w.parser.ReadParts(&ctxReader{ctx: ctx, r: bytes.NewReader(data)})
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if depth == 0 {
		st.c.Header = root.Header
		st.c.Subject = subjectOf(root.Header)
	}
	return st.tree(ctx, root, depth, id, parent, true)
}

// subjectOf is the decoded Subject of a header (RFC 2047), in UTF-8.
func subjectOf(h textproto.MIMEHeader) string {
	return strings.ToValidUTF8(enmime.DecodeRFC2047(h.Get("Subject")), "\uFFFD")
}

// isContainer repeats enmime's decision to parse a part as a multipart.
func isContainer(p *enmime.Part, top bool) bool {
	if p.Boundary == "" {
		return false
	}
	if top {
		return strings.HasPrefix(p.ContentType, "multipart/")
	}
	return p.ContentType != "text/plain" && p.ContentType != "text/html"
}

func (st *walkState) tree(ctx context.Context, p *enmime.Part, depth int, id string, parent int, top bool) error {
	lim := &st.w.lim
	// The pre-scan has bounded the tree already; these checks are the
	// last line of defence should enmime ever see more than it did.
	if len(st.c.Parts) >= lim.MaxParts {
		return &LimitError{Limit: LimitParts, Max: int64(lim.MaxParts), Part: id}
	}
	if depth > lim.MaxDepth {
		return &LimitError{Limit: LimitDepth, Max: int64(lim.MaxDepth), Part: id}
	}
	if err := ctxErr(ctx); err != nil {
		return err
	}
	part := Part{
		ID:          id,
		Parent:      parent,
		Depth:       depth,
		ContentType: strings.ToLower(p.ContentType),
		Charset:     p.Charset,
		Disposition: strings.ToLower(p.Disposition),
		FileName:    strings.ToValidUTF8(p.FileName, "\uFFFD"),
		Encoding:    strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))),
	}
	for _, e := range p.Errors {
		part.Errors = append(part.Errors, e.Name+": "+e.Detail)
	}
	// enmime reports a media type's malformed parameters in map order:
	// sorted, the same message always gets the same findings.
	slices.Sort(part.Errors)
	if !isContainer(p, top) {
		content := p.Content
		p.Content = nil // the part's copy is all that is kept
		return st.leaf(ctx, part, content)
	}
	idx := len(st.c.Parts)
	part.Multipart = true
	st.c.Parts = append(st.c.Parts, part)
	n := 0
	for c := p.FirstChild; c != nil; c = c.NextSibling {
		n++
		if err := st.tree(ctx, c, depth+1, childID(id, n), idx, false); err != nil {
			return err
		}
	}
	return nil
}

// leaf adds a leaf entity with its decoded content: the text of a text
// part, the content of another, the parts of an attached message. The
// fast path adds its one entity here too.
func (st *walkState) leaf(ctx context.Context, part Part, content []byte) error {
	if st.decodedLeft -= int64(len(content)); st.decodedLeft < 0 {
		return &LimitError{Limit: LimitDecodedSize, Max: st.w.lim.MaxDecodedBytes, Part: part.ID}
	}
	st.c.Decoded += int64(len(content))
	part.Size = int64(len(content))
	part.Sniffed = Sniff(content)
	if part.IsText() {
		st.textLeaf(&part, content)
		st.c.Parts = append(st.c.Parts, part)
		return nil
	}
	part.SHA256 = sha256.Sum256(content)
	if isMessageType(part.ContentType) && len(content) > 0 {
		return st.attachedMessage(ctx, part, content)
	}
	part.data = content
	st.c.Parts = append(st.c.Parts, part)
	return nil
}

// textLeaf fills in a text part: its text in UTF-8 (invalid bytes
// replaced), size and hash, and the URLs in it. The text is a copy of
// content, made once; content is hashed directly when it is the text.
func (st *walkState) textLeaf(part *Part, content []byte) {
	if utf8.Valid(content) {
		part.text = string(content)
		part.SHA256 = sha256.Sum256(content)
	} else {
		part.text = strings.ToValidUTF8(string(content), "\uFFFD")
		part.SHA256 = sha256.Sum256([]byte(part.text))
	}
	part.Size = int64(len(part.text))
	// An archive declared text is still one once saved: its bytes are
	// kept for the attachment check to look inside (a copy: content may
	// be the caller's buffer).
	if k, _ := archiveKindOf(content); k != notArchive {
		part.data = bytes.Clone(content)
	}
	st.textURLs(part)
}

// attachedMessage adds a message/rfc822 (or global) part and walks the
// message in it; one that does not parse stays an opaque leaf.
func (st *walkState) attachedMessage(ctx context.Context, part Part, content []byte) error {
	idx := len(st.c.Parts)
	part.Message = true
	st.c.Parts = append(st.c.Parts, part)
	err := st.entity(ctx, content, part.Depth+1, childID(part.ID, 1), idx)
	if err != nil && !errors.Is(err, ErrMalformed) {
		return err
	}
	if err != nil {
		// Not a message after all: keep it as an opaque leaf.
		st.c.Parts[idx].Message = false
		st.c.Parts[idx].data = content
		st.c.Parts[idx].Errors = append(st.c.Parts[idx].Errors, err.Error())
	}
	return nil
}
