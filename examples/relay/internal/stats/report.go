package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/postern/postern/internal/termsafe"
)

// maxKeyRunes bounds a name in the text report; senders are chosen by
// strangers.
const maxKeyRunes = 80

// WriteText writes a plain-text report of s for an administrator: the
// period, totals, rejections by reason, viruses by name, the spam ratio,
// top senders and sources, and a table per UTC day. Names from the
// journal are printed with control and invisible characters escaped, so
// a sender cannot forge report lines.
func (s *Summary) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }

	p("Postern statistics for %s\n\n", formatPeriod(s.From, s.To))

	width := numWidth(s.Received, s.Delivered, s.Deferred, s.Bounced, s.Expired,
		s.Quarantined, s.Discarded, s.Rejected, s.VirusesFound, s.Spam+s.Ham)
	row := func(label string, n int, note string) {
		p("  %-12s %*d", label, width, n)
		if note != "" {
			p("  %s", note)
		}
		p("\n")
	}
	p("Totals\n")
	row("received", s.Received, "messages, "+formatBytes(s.ReceivedBytes))
	row("delivered", s.Delivered, "recipients, "+formatBytes(s.DeliveredBytes))
	row("deferred", s.Deferred, "delivery attempts")
	row("bounced", s.Bounced, "recipients")
	row("expired", s.Expired, "recipients")
	row("quarantined", s.Quarantined, "messages")
	row("discarded", s.Discarded, "messages")
	row("rejected", s.Rejected, fmt.Sprintf("commands, %d of them temporarily (4xx)", s.RejectedTemp))
	row("viruses", s.VirusesFound, "found")
	spam := "no message scored"
	if scored := s.Spam + s.Ham; scored > 0 {
		spam = fmt.Sprintf("of %d scored messages (%.1f%% spam)", scored, 100*s.SpamRatio)
	}
	row("spam", s.Spam, spam)

	ranked := func(title string, cs []Count) {
		p("\n%s\n", title)
		if len(cs) == 0 {
			p("  none\n")
			return
		}
		width := 0
		for _, c := range cs {
			width = max(width, len(strconv.Itoa(c.N)))
		}
		for _, c := range cs {
			p("  %*d  %s\n", width, c.N, printable(c.Key))
		}
	}
	ranked("Rejected by reason", s.RejectedBy)
	ranked("Viruses by name", s.Viruses)
	ranked("Top senders", s.TopSenders)
	ranked("Top sources", s.TopSources)

	p("\nPer day (UTC)\n")
	cols := []string{"received", "delivered", "rejected", "quarantined", "viruses", "spam"}
	widths := make([]int, len(cols))
	for i, c := range cols {
		widths[i] = len(c)
	}
	for _, d := range s.Days {
		for i, n := range d.values() {
			widths[i] = max(widths[i], len(strconv.Itoa(n)))
		}
	}
	p("  %-10s", "date")
	for i, c := range cols {
		p("  %*s", widths[i], c)
	}
	p("\n")
	for _, d := range s.Days {
		p("  %-10s", d.Date.Format(dayLayout))
		for i, n := range d.values() {
			p("  %*d", widths[i], n)
		}
		p("\n")
	}

	if s.Greylist != nil {
		s.writeGreylist(p)
	}

	if s.BadLines > 0 {
		p("\nNote: %d unreadable journal line(s) skipped.\n", s.BadLines)
	}
	return bw.Flush()
}

// writeGreylist writes the greylisting table: per day of first attempt,
// the triplets greylisted, passed and never retried ("-" while their
// retry window is open).
func (s *Summary) writeGreylist(p func(format string, a ...any)) {
	p("\nGreylisting (triplets by the UTC day of their first attempt)\n")
	if len(s.Greylist) == 0 {
		p("  none\n")
		return
	}
	p("  %-10s  %10s  %10s  %13s\n", "date", "greylisted", "passed", "never retried")
	for _, d := range s.Greylist {
		never := "-"
		if d.Final {
			never = strconv.FormatInt(d.NeverRetried, 10)
		}
		p("  %-10s  %10d  %10d  %13s\n", d.Date.Format(dayLayout), d.Greylisted, d.Passed, never)
	}
}

func (d Day) values() [6]int {
	return [6]int{d.Received, d.Delivered, d.Rejected, d.Quarantined, d.Viruses, d.Spam}
}

// Message returns the report as an RFC 5322 message from one address to
// another (each "addr@domain" or "Name <addr@domain>"), for the daily
// mail to the postmaster: Subject "Postern statistics for <hostname>:
// <period>", Date and Message-ID from now and hostname (so the same
// arguments give the same bytes), Auto-Submitted: auto-generated (RFC
// 3834 §5) and a text/plain; charset=utf-8 body with CRLF line ends,
// quoted-printable when it is not plain ASCII.
func (s *Summary) Message(from, to, hostname string, now time.Time) ([]byte, error) {
	fromAddr, err := headerAddress("From", from)
	if err != nil {
		return nil, err
	}
	toAddr, err := headerAddress("To", to)
	if err != nil {
		return nil, err
	}
	if hostname == "" || strings.ContainsFunc(hostname, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune("<>@\"()[],;:\\", r)
	}) {
		return nil, fmt.Errorf("%w: hostname %q", ErrMessage, hostname)
	}

	var text bytes.Buffer
	if err := s.WriteText(&text); err != nil {
		return nil, err
	}
	plain := isPlain(text.Bytes())

	var b bytes.Buffer
	header := func(name, value string) {
		b.WriteString(fold(name + ": " + value))
		b.WriteString("\r\n")
	}
	header("Date", now.Format(time.RFC1123Z))
	header("From", fromAddr)
	header("To", toAddr)
	header("Subject", mime.QEncoding.Encode("utf-8", "Postern statistics for "+hostname+": "+formatPeriod(s.From, s.To)))
	// RFC 5322 §3.6.4: unique by time to the nanosecond and host.
	header("Message-ID", "<postern-stats."+now.UTC().Format("20060102150405.000000000")+"@"+hostname+">")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	if plain {
		header("Content-Transfer-Encoding", "7bit")
	} else {
		header("Content-Transfer-Encoding", "quoted-printable")
	}
	header("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	if plain {
		b.Write(bytes.ReplaceAll(text.Bytes(), []byte("\n"), []byte("\r\n")))
	} else {
		qp := quotedprintable.NewWriter(&b)
		qp.Write(text.Bytes()) // writes to a bytes.Buffer do not fail
		qp.Close()
	}
	return b.Bytes(), nil
}

// headerAddress parses an address for a header and formats it again, so
// that whatever the caller passed cannot inject a header.
func headerAddress(field, s string) (string, error) {
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%w: %s address %q has a line break", ErrMessage, field, s)
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", fmt.Errorf("%w: %s address %q: %v", ErrMessage, field, s, err)
	}
	return a.String(), nil
}

// isPlain reports whether text is ASCII in lines short enough for 7bit
// (RFC 5322 §2.1.1: 998 characters).
func isPlain(text []byte) bool {
	for line := range bytes.SplitSeq(text, []byte("\n")) {
		if len(line) > 998 {
			return false
		}
		for _, c := range line {
			if c >= 0x80 || c == '\r' || c == 0 {
				return false
			}
		}
	}
	return true
}

// fold breaks a header line at spaces to keep lines within 78
// characters where it can (RFC 5322 §2.2.3).
func fold(line string) string {
	if len(line) <= 78 {
		return line
	}
	var b strings.Builder
	for len(line) > 78 {
		i := strings.LastIndexByte(line[:78], ' ')
		if i <= 0 || strings.TrimSpace(line[:i]) == "" {
			// No space to fold at within the limit: fold at the next one.
			j := strings.IndexByte(line[78:], ' ')
			if j < 0 {
				break
			}
			i = 78 + j
		}
		b.WriteString(line[:i])
		b.WriteString("\r\n")
		line = line[i:] // the space starts the continuation line
	}
	b.WriteString(line)
	return b.String()
}

// formatPeriod writes [from, to) in from's zone, to the minute, the zone
// named once when both ends share it.
func formatPeriod(from, to time.Time) string {
	const layout = "2006-01-02 15:04"
	to = to.In(from.Location())
	fz, tz := from.Format("MST"), to.Format("MST")
	if fz == tz {
		return from.Format(layout) + " to " + to.Format(layout) + " " + fz
	}
	return from.Format(layout) + " " + fz + " to " + to.Format(layout) + " " + tz
}

// formatBytes is a size in decimal units.
func formatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, units := float64(n)/unit, "kMGTPE"
	i := 0
	for f >= unit && i < len(units)-1 {
		f /= unit
		i++
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + units[i:i+1] + "B"
}

func numWidth(ns ...int) int {
	w := 1
	for _, n := range ns {
		w = max(w, len(strconv.Itoa(n)))
	}
	return w
}

// printable returns s for a report line: at most maxKeyRunes runes, and
// every control, invisible or invalid character replaced by '?'
// (internal/termsafe, the escaping of every admin command and report).
func printable(s string) string {
	if utf8.RuneCountInString(s) > maxKeyRunes {
		r := []rune(s)
		s = string(r[:maxKeyRunes]) + "..."
	}
	return termsafe.String(s)
}
