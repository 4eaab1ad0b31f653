package route

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern"
)

// step names the point of the SMTP dialogue where something failed.
type step uint8

const (
	stepConnect step = iota
	stepGreeting
	stepEHLO
	stepSTARTTLS
	stepTLS
	stepMAIL
	stepRCPT
	stepDATA
	stepBody
	stepDot
	stepAUTH
)

var stepPhrases = [...]string{
	stepConnect:  "while connecting",
	stepGreeting: "while receiving the initial server greeting",
	stepEHLO:     "while sending EHLO",
	stepSTARTTLS: "while sending STARTTLS",
	stepTLS:      "during the TLS handshake",
	stepMAIL:     "while sending MAIL FROM",
	stepRCPT:     "while sending RCPT TO",
	stepDATA:     "while sending DATA",
	stepBody:     "while sending the message body",
	stepDot:      "while sending end of data -- message may be sent more than once",
	stepAUTH:     "while authenticating (AUTH)",
}

func (s step) phrase() string { return stepPhrases[s] }

// replyFromSMTPError turns go-smtp's error into a postern.Reply. go-smtp
// has split off the code and the enhanced code of the first line and
// joined the lines with "\n"; the wire form is rebuilt and read back with
// postern.ParseReply, so a remote answer gets the same treatment here as
// on the server side (enhanced code kept only when its class matches,
// RFC 2034 §4; CR and LF never kept in text). ok is false when the code
// is not a reply code at all.
func replyFromSMTPError(e *smtp.SMTPError) (postern.Reply, bool) {
	if e == nil || e.Code < 200 || e.Code > 599 {
		return postern.Reply{}, false
	}
	var esc string
	if ec := e.EnhancedCode; ec != smtp.EnhancedCodeNotSet && ec != smtp.NoEnhancedCode {
		esc = strconv.Itoa(ec[0]) + "." + strconv.Itoa(ec[1]) + "." + strconv.Itoa(ec[2])
	}
	lines := strings.Split(e.Message, "\n")
	if len(lines) > 64 {
		lines = lines[:64] // a reply this long says nothing more
	}
	code := strconv.Itoa(e.Code)
	var b strings.Builder
	for i, l := range lines {
		b.WriteString(code)
		if i < len(lines)-1 {
			b.WriteByte('-')
		} else {
			b.WriteByte(' ')
		}
		if esc != "" {
			b.WriteString(esc)
			b.WriteByte(' ')
		}
		b.WriteString(strings.NewReplacer("\r", " ", "\n", " ").Replace(l))
		b.WriteString("\r\n")
	}
	r, err := postern.ParseReplyString(b.String())
	if err != nil {
		return postern.Reply{}, false
	}
	return r, true
}

// remoteReply builds the Reply of a server answer: go-smtp's error, or
// the 2xx text go-smtp returns as a plain string.
func okReply(code int, text string) postern.Reply {
	r, ok := replyFromSMTPError(&smtp.SMTPError{Code: code, Message: text})
	if !ok {
		return postern.NewReply(code, postern.EnhancedCode{}, text)
	}
	return r
}

// localFailure describes a failure that is not a server reply: a timeout,
// a lost connection, garbage, a cancelled attempt. It is always temporary:
// the message has not been refused.
func localFailure(ctx context.Context, host string, s step, err error) postern.Reply {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return postern.NewReply(451, postern.ESC(4, 4, 2), "delivery to "+host+" interrupted "+s.phrase())
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || isTimeout(err):
		if s == stepConnect {
			return postern.NewReply(451, postern.ESC(4, 4, 1), "connect to "+host+": timed out")
		}
		return postern.NewReply(451, postern.ESC(4, 4, 2), "conversation with "+host+" timed out "+s.phrase())
	case s == stepConnect:
		return postern.NewReply(451, postern.ESC(4, 4, 1), "connect to "+host+": "+dialText(err))
	case s == stepTLS || isTLSError(err):
		return postern.NewReply(451, postern.ESC(4, 7, 5), "TLS handshake with "+host+" failed: "+shortErr(err))
	case isLost(err):
		return postern.NewReply(451, postern.ESC(4, 4, 2), "lost connection with "+host+" "+s.phrase())
	}
	return postern.NewReply(451, postern.ESC(4, 5, 0), "protocol error with "+host+" "+s.phrase()+": "+shortErr(err))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isLost(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

func isTLSError(err error) bool {
	var (
		ae  tls.AlertError
		rh  tls.RecordHeaderError
		ve  *tls.CertificateVerificationError
		ha  x509.HostnameError
		ua  x509.UnknownAuthorityError
		ci  x509.CertificateInvalidError
		eae *tls.ECHRejectionError
	)
	return errors.As(err, &ae) || errors.As(err, &rh) || errors.As(err, &ve) || errors.As(err, &ha) ||
		errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &eae)
}

func dialText(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "Connection refused"
	case errors.Is(err, syscall.ENETUNREACH):
		return "Network is unreachable"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "No route to host"
	}
	return shortErr(err)
}

// shortErr drops the "dial tcp a->b:" decoration of net errors.
func shortErr(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
