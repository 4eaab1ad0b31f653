package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
)

// original is what a DSN returns of the message it reports on.
type original struct {
	content   []byte // CRLF line ends
	kind      Return
	truncated bool   // the whole message was asked for, its header sent
	headerCut bool   // the header alone was over the bound and was cut
	messageID string // its Message-ID, for In-Reply-To and References
}

// loadOriginal reads at most MaxReturn bytes of r.Message and keeps the
// whole message (wantFull and it fits) or its header.
func (c *Composer) loadOriginal(r *Report, wantFull, global bool) (original, error) {
	var o original
	if r.Message == nil || r.Size == 0 {
		return o, nil
	}
	buf := make([]byte, min(r.Size, c.maxReturn))
	n, err := r.Message.ReadAt(buf, 0)
	if n < len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			err = errShortRead
		}
		return o, fmt.Errorf("dsn: reading the original message: %w", err)
	}
	whole := int64(len(buf)) == r.Size
	end, found := headerEnd(buf)
	header := buf[:end]
	if !found && whole {
		header = buf // a message without a body is all header
	}
	o.headerCut = !found && !whole
	o.messageID = messageID(header, global)
	if wantFull && whole {
		o.kind, o.content = ReturnFull, normalizeCRLF(buf)
	} else {
		o.kind, o.content = ReturnHeaders, normalizeCRLF(header)
		o.truncated = wantFull
	}
	return o, nil
}

// headerEnd returns the length of the header block at the start of msg
// (its lines, without the empty line that ends it) and whether that
// empty line was found. Without it, the length covers the complete lines
// only.
func headerEnd(msg []byte) (int, bool) {
	pos := 0
	for pos < len(msg) {
		i := bytes.IndexByte(msg[pos:], '\n')
		if i < 0 {
			break
		}
		line := msg[pos : pos+i+1]
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			return pos, true
		}
		pos += i + 1
	}
	return pos, false
}

// messageID returns the Message-ID of a header block when it is a plain
// msg-id (RFC 5322 §3.6.4) fit to copy into our header, else "".
func messageID(header []byte, global bool) string {
	tp := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(header), strings.NewReader("\r\n"))))
	h, _ := tp.ReadMIMEHeader() // a broken field later on does not matter
	id := strings.TrimSpace(h.Get("Message-Id"))
	if len(id) < 3 || len(id) > 900 || id[0] != '<' || id[len(id)-1] != '>' ||
		strings.ContainsAny(id[1:len(id)-1], "<> \t\r\n") || cleanHeader(id, global) != id {
		return ""
	}
	return id
}
