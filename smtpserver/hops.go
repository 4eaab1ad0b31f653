package smtpserver

import (
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern"
)

// DefaultMaxHops is Config.MaxHops's default, Postfix's hopcount_limit.
// sendmail's MaxHopCount is 25; RFC 5321 §6.3 asks for a large threshold
// ("normally at least 100") so that long legitimate paths pass.
const DefaultMaxHops = 50

// hopCount counts the trace fields that mark a hop: Received (RFC 5321
// §4.4) and Delivered-To, which Postfix and others add at final delivery
// and count towards the limit the same way.
func hopCount(m *postern.Message) int {
	n := 0
	for _, f := range m.Fields() {
		if strings.EqualFold(f.Name, "Received") || strings.EqualFold(f.Name, "Delivered-To") {
			n++
		}
	}
	return n
}

// tooManyHops answers a message that has been round a loop (RFC 5321
// §6.3): refused at the end of DATA, so the sending side bounces it once
// instead of passing it on again. Like Postfix, the limit counts the
// Received field we would add: a message arriving with limit fields has
// made limit hops already.
func tooManyHops(hops, limit int) *smtp.SMTPError {
	if limit < 0 || hops < limit {
		return nil
	}
	return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6}, Message: "Too many hops"}
}
