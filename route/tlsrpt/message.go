package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Message returns the mail carrying a report for domain to the
// addresses (RFC 8460 §5.3): multipart/report; report-type="tlsrpt",
// a short text part and the gzipped JSON as application/tlsrpt+gzip,
// named submitter!domain!begin!end.json.gz.
func (r *Reporter) Message(rep Report, domain string, to []string) ([]byte, error) {
	js, err := json.Marshal(rep)
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(js); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	boundary := "tlsrpt-" + randHex(12)
	now := r.cfg.Now()
	var b strings.Builder
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", "<"+r.cfg.From+">")
	hdr("To", "<"+strings.Join(to, ">, <")+">")
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("Subject", "Report Domain: "+domain+" Submitter: "+r.cfg.Submitter+" Report-ID: <"+rep.ReportID+">")
	hdr("Message-ID", "<tlsrpt."+randHex(8)+"."+strconv.FormatInt(now.Unix(), 10)+"@"+r.cfg.Submitter+">")
	hdr("TLS-Report-Domain", domain)
	hdr("TLS-Report-Submitter", r.cfg.Submitter)
	hdr("Auto-Submitted", "auto-generated")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", `multipart/report; report-type="tlsrpt"; boundary="`+boundary+`"`)
	b.WriteString("\r\nThis is a multipart message in MIME format.\r\n\r\n--" + boundary + "\r\n")
	hdr("Content-Type", `text/plain; charset="us-ascii"`)
	hdr("Content-Transfer-Encoding", "7bit")
	fmt.Fprintf(&b, "\r\nThis is an aggregate TLS report (RFC 8460) from %s for %s,\r\n%s to %s.\r\n\r\n--%s\r\n",
		r.cfg.Submitter, domain, rep.DateRange.Start.Format(time.RFC3339), rep.DateRange.End.Format(time.RFC3339), boundary)
	hdr("Content-Type", "application/tlsrpt+gzip")
	hdr("Content-Transfer-Encoding", "base64")
	name := fmt.Sprintf("%s!%s!%d!%d.json.gz", r.cfg.Submitter, domain, rep.DateRange.Start.Unix(), rep.DateRange.End.Unix())
	hdr("Content-Disposition", `attachment; filename="`+name+`"`)
	b.WriteString("\r\n")
	enc := base64.StdEncoding.EncodeToString(gz.Bytes())
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--" + boundary + "--\r\n")
	return []byte(b.String()), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
