package milter

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/postern/postern"
)

// maxParamValue bounds an ESMTP parameter value kept (RFC 3461 §4: ENVID
// and ORCPT are at most 100 and 500 characters once encoded; the MTA has
// checked them, a hostile peer may not have).
const maxParamValue = 1000

// mailParams reads the ESMTP parameters of MAIL FROM as the MTA passes
// them (KEY=VALUE words separated by spaces; RFC 1870 SIZE, RFC 6152 and
// RFC 3030 BODY, RFC 6531 SMTPUTF8, RFC 8689 REQUIRETLS, RFC 3461 RET and
// ENVID, RFC 4954 AUTH). The MTA has already checked them against its
// own rules; a value that does not parse is left out, never guessed.
func mailParams(args string) postern.MailParams {
	var p postern.MailParams
	for _, w := range strings.Fields(args) {
		key, val, _ := strings.Cut(w, "=")
		if len(val) > maxParamValue {
			continue
		}
		switch strings.ToUpper(key) {
		case "SIZE":
			if n, err := strconv.ParseInt(val, 10, 64); err == nil && n >= 0 {
				p.Size = n
			}
		case "BODY":
			switch v := strings.ToUpper(val); v {
			case "7BIT", "8BITMIME", "BINARYMIME":
				p.Body = v
			}
		case "SMTPUTF8":
			p.SMTPUTF8 = true
		case "REQUIRETLS":
			p.RequireTLS = true
		case "RET":
			switch v := strings.ToUpper(val); v {
			case "FULL", "HDRS":
				p.Ret = v
			}
		case "ENVID":
			if v, ok := decodeXtext(val); ok {
				p.EnvID = v
			}
		case "AUTH":
			p.Auth = authParam(val)
		}
	}
	return p
}

// authParam reads AUTH=: an xtext mailbox or "<>" (RFC 4954 §5); one that
// does not parse is <>, "the authenticated identity is unknown".
func authParam(val string) *string {
	empty := ""
	v, ok := decodeXtext(val)
	if !ok || v == "<>" {
		return &empty
	}
	a, err := postern.ParseMailbox(strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">"))
	if err != nil || a.Domain == "" {
		return &empty
	}
	s := a.String()
	return &s
}

// rcptParams sets the RFC 3461 parameters of RCPT TO on r.
func rcptParams(r *postern.Rcpt, args string) {
	for _, w := range strings.Fields(args) {
		key, val, _ := strings.Cut(w, "=")
		if len(val) > maxParamValue {
			continue
		}
		switch strings.ToUpper(key) {
		case "NOTIFY":
			r.Notify = nil
			for _, n := range strings.Split(strings.ToUpper(val), ",") {
				switch n {
				case "NEVER", "SUCCESS", "FAILURE", "DELAY":
					r.Notify = append(r.Notify, n)
				}
			}
		case "ORCPT":
			typ, addr, ok := strings.Cut(val, ";")
			if v, dec := decodeXtext(addr); ok && dec && typ != "" {
				r.ORcptType, r.ORcpt = typ, v
			}
		}
	}
}

// decodeXtext decodes RFC 3461 §4 xtext ("+" and two upper-case hex
// digits stand for a byte); ok is false for a malformed one.
func decodeXtext(s string) (string, bool) {
	if !strings.Contains(s, "+") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '+' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), true
}

// encodeXtext writes s as xtext: "+", "=", controls, space and
// non-ASCII bytes as "+XX".
func encodeXtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// mailArgs writes MAIL FROM's parameters for an external milter.
func mailArgs(p postern.MailParams) string {
	var out []string
	if p.Size > 0 {
		out = append(out, "SIZE="+strconv.FormatInt(p.Size, 10))
	}
	if p.Body != "" {
		out = append(out, "BODY="+p.Body)
	}
	if p.SMTPUTF8 {
		out = append(out, "SMTPUTF8")
	}
	if p.RequireTLS {
		out = append(out, "REQUIRETLS")
	}
	if p.Ret != "" {
		out = append(out, "RET="+p.Ret)
	}
	if p.EnvID != "" {
		out = append(out, "ENVID="+encodeXtext(p.EnvID))
	}
	if p.Auth != nil {
		a := "<>"
		if *p.Auth != "" {
			a = postern.WireAddr(*p.Auth)
		}
		out = append(out, "AUTH="+encodeXtext(a))
	}
	return strings.Join(out, " ")
}

// rcptArgs writes RCPT TO's parameters for an external milter.
func rcptArgs(r *postern.Rcpt) string {
	var out []string
	if len(r.Notify) > 0 {
		out = append(out, "NOTIFY="+strings.Join(r.Notify, ","))
	}
	if r.ORcptType != "" {
		out = append(out, "ORCPT="+r.ORcptType+";"+encodeXtext(r.ORcpt))
	}
	return strings.Join(out, " ")
}
