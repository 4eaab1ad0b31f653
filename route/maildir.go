package route

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/postern/postern"
	"github.com/postern/postern/queue"
)

// deliverLocal writes the message into each recipient's Maildir folder
// (https://cr.yp.to/proto/maildir.html).
func (t *Transport) deliverLocal(ctx context.Context, d *queue.Delivery, rt Route, jobs []*rcptJob, results []queue.Result) {
	for _, j := range jobs {
		var rep postern.Reply
		switch {
		case ctx.Err() != nil:
			rep = postern.NewReply(451, postern.ESC(4, 3, 0), "local delivery interrupted")
		case t.maildir == "":
			rep = postern.NewReply(451, postern.ESC(4, 3, 5), "local delivery is not configured (no Maildir root)")
		default:
			rep = t.deliverMaildir(d, rt.Hop.User, j.to)
		}
		setResult(results, j, queue.Result{Reply: rep})
	}
}

// MaildirFolder returns the folder "local:" delivers addr to under root:
// <root>/<user> for "local:user", else <root>/<domain>/<local part>, in
// lower case. Names that could leave the root or hide a folder ("..",
// a slash, a leading dot, control characters) are refused.
func MaildirFolder(root, user, addr string) (string, error) {
	if user != "" {
		if !safeComponent(user) {
			return "", fmt.Errorf("%w: bad mailbox name %q", ErrBadAddress, user)
		}
		return filepath.Join(root, user), nil
	}
	domain, local := postern.AddrDomain(addr), strings.ToLower(postern.AddrLocal(addr))
	if !strings.Contains(addr, "@") || !safeComponent(domain) || !safeComponent(local) {
		return "", fmt.Errorf("%w: no Maildir folder for %q", ErrBadAddress, addr)
	}
	return filepath.Join(root, domain, local), nil
}

// mailboxExists reports whether dir is a Maildir folder: new/ under it
// is a directory.
func mailboxExists(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "new"))
	return err == nil && fi.IsDir()
}

// mustExist reports whether delivery to addr needs its mailbox to exist
// already: with MaildirExistingOnly, for everybody but postmaster.
func (t *Transport) mustExist(user, addr string) bool {
	return t.maildirExist && user == "" && !strings.EqualFold(postern.AddrLocal(addr), "postmaster")
}

func noMailbox(addr string) postern.Reply {
	return postern.NewReply(550, postern.ESC(5, 1, 1), "<"+addr+">: Recipient address rejected: User unknown in local mailbox table")
}

func safeComponent(s string) bool {
	return s != "" && len(s) <= 255 && s[0] != '.' && !strings.ContainsAny(s, "/\\") && !hasCtl(s)
}

func (t *Transport) deliverMaildir(d *queue.Delivery, user, addr string) postern.Reply {
	dir, err := MaildirFolder(t.maildir, user, addr)
	if err != nil {
		return postern.NewReply(550, postern.ESC(5, 1, 3), "bad destination mailbox address syntax")
	}
	if deliveredTo(d, addr) {
		// Postfix's loop test: this message was delivered here before.
		return postern.NewReply(554, postern.ESC(5, 4, 6), "mail forwarding loop for "+addr)
	}
	if t.mustExist(user, addr) && !mailboxExists(dir) {
		return noMailbox(addr)
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return localIOReply(err)
		}
	}
	now := t.now()
	host := strings.NewReplacer("/", `\057`, ":", `\072`).Replace(t.hostname)
	// Unique name (maildir.html, "modern" form): seconds, then
	// microseconds, process ID and a per-process counter, then the host.
	base := strconv.FormatInt(now.Unix(), 10) + ".M" + strconv.Itoa(now.Nanosecond()/1000) +
		"P" + strconv.Itoa(t.pid) + "Q" + strconv.FormatUint(t.seq.Add(1), 10) + "." + host
	tmp := filepath.Join(dir, "tmp", base)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return localIOReply(err)
	}
	size, err := writeMaildirMessage(f, d, addr)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return localIOReply(err)
	}
	final := filepath.Join(dir, "new", base+",S="+strconv.FormatInt(size, 10))
	// A link never replaces an existing file, as rename would.
	if err := os.Link(tmp, final); err != nil {
		if !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.ENOTSUP) {
			os.Remove(tmp)
			return localIOReply(err)
		}
		if err := os.Rename(tmp, final); err != nil {
			os.Remove(tmp)
			return localIOReply(err)
		}
	} else {
		os.Remove(tmp)
	}
	if err := syncDir(filepath.Join(dir, "new")); err != nil {
		return localIOReply(err)
	}
	return postern.NewReply(250, postern.ESC(2, 0, 0), "delivered to maildir")
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func localIOReply(err error) postern.Reply {
	switch {
	case errors.Is(err, syscall.EDQUOT):
		return postern.NewReply(452, postern.ESC(4, 2, 2), "mailbox full")
	case errors.Is(err, syscall.ENOSPC):
		return postern.NewReply(452, postern.ESC(4, 3, 1), "insufficient system storage")
	}
	return postern.NewReply(451, postern.ESC(4, 3, 0), "local delivery failed: "+shortErr(err))
}

// writeMaildirMessage writes Return-Path and Delivered-To, then the
// message with LF line ends, as Maildir readers expect.
func writeMaildirMessage(w io.Writer, d *queue.Delivery, addr string) (int64, error) {
	cw := &countWriter{w: w}
	bw := bufio.NewWriter(cw)
	from := ""
	if d.Envelope != nil {
		from = d.Envelope.From
	}
	// RFC 5322 addr-specs: the wire form quotes a local part as SMTP does.
	bw.WriteString("Return-Path: <" + postern.WireAddr(from) + ">\n")
	bw.WriteString("Delivered-To: " + postern.WireAddr(addr) + "\n")
	lw := &lfWriter{w: bw}
	if d.Message != nil {
		if _, err := io.Copy(lw, io.NewSectionReader(d.Message, 0, d.Size)); err != nil {
			return 0, err
		}
	}
	lw.flush()
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// lfWriter turns CRLF into LF; a lone CR is kept.
type lfWriter struct {
	w  *bufio.Writer
	cr bool
}

func (l *lfWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		if l.cr {
			l.cr = false
			if b != '\n' {
				l.w.WriteByte('\r')
			}
		}
		if b == '\r' {
			l.cr = true
			continue
		}
		l.w.WriteByte(b)
	}
	return len(p), nil
}

func (l *lfWriter) flush() {
	if l.cr {
		l.w.WriteByte('\r')
		l.cr = false
	}
}

// deliveredTo reports a Delivered-To header field naming addr.
func deliveredTo(d *queue.Delivery, addr string) bool {
	if d.Message == nil {
		return false
	}
	br := bufio.NewReader(io.NewSectionReader(d.Message, 0, min(d.Size, maxHeaderScan)))
	for {
		line, err := br.ReadString('\n')
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" {
			return false
		}
		if name, value, ok := strings.Cut(trimmed, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Delivered-To") &&
			strings.EqualFold(strings.Trim(strings.TrimSpace(value), "<>"), postern.WireAddr(addr)) {
			return true
		}
		if err != nil {
			return false
		}
	}
}
