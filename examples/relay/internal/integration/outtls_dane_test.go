package integration

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/route/dane"
	"github.com/postern/postern/route/resolver/dnstest"
	"github.com/postern/postern/route/tlsrpt"
)

// The relay binary with dns.dnssec (a resolver it trusts, here one that
// sets AD on the signed zone) and TLS-RPT on:
//   - DANE: a TLSA 3 1 1 record of the MX's key in a signed zone:
//     delivered, authenticated by DANE (under dane-only from the policy
//     map too); a record of another key: deferred with the reason; a TLSA
//     record without AD: opportunistic TLS; dane-only without validated
//     records: deferred; TLSA records and an MTA-STS policy that would
//     refuse the host: DANE wins, delivered.
//   - MTA-STS testing with an MX certificate no trusted CA issued:
//     delivered anyway.
//
// The relay is then stopped and the day's journal made yesterday's (as
// if the relay had been down at midnight): the restarted relay mails the
// reports through its queue to the rua of each _smtp._tls record, and the
// test checks them with the RFC 8460 validator and reads the counts.
func TestDANEAndTLSReportThroughRelay(t *testing.T) {
	need(t, "python3")
	dir := t.TempDir()
	ca, rogue := newTestCA(t, dir), newTestCA(t, t.TempDir())
	stsIP := "127.0.0." + strconv.Itoa(100+os.Getpid()%150)
	stsHost(t, stsIP, ca, map[string]string{
		"testing.example": "version: STSv1\nmode: testing\nmx: mx.testing.example\nmax_age: 86400\n",
		// Were it applied, this policy would refuse the MX host.
		"both.signed.example": "version: STSv1\nmode: enforce\nmx: mx.elsewhere.example\nmax_age: 86400\n",
	})
	domains := []string{"signed.example", "wrongkey.signed.example", "unsigned.example", "testing.example", "daneonly.example",
		"both.signed.example"}
	ports := map[string]string{}
	var mt strings.Builder
	for _, d := range domains {
		_, ports[d], _ = net.SplitHostPort(freeAddr(t))
		fmt.Fprintf(&mt, "%s esmtp:%s:%s\n", d, d, ports[d])
	}
	// The reports' recipient is a named host: the restarted relay counts
	// the MX address below as its own (an MX there would be a loop).
	reports := startSink(t, "127.0.0.1:0")
	fmt.Fprintf(&mt, "reports.example esmtp:[127.0.0.1]:%s\n", reports.addr[strings.LastIndex(reports.addr, ":")+1:])
	writeFile(t, dir, "mailertable", mt.String())
	writeFile(t, dir, "tls_policy", "daneonly.example:"+ports["daneonly.example"]+" dane-only\nsigned.example:"+ports["signed.example"]+" dane-only\n")
	dns := dnstest.Start(t)
	conf := writeFile(t, dir, "relay.toml", `
local_domains = ["example.test"]
hostname = "relay.example.test"
[smtp]
listen = "127.0.0.1:0"
greet_pause = "0s"
[dns]
resolvers = ["`+dns.Addr+`"]
dnssec = true
[delivery]
mailertable = "mailertable"
tls_policy_map = "tls_policy"
tls_ca_file = "`+ca.file(t)+`"
[tlsrpt]
enabled = true
from = "tlsrpt@example.test"
organization = "Integration Test"
`)
	spool := filepath.Join(dir, "spool")
	r := startRelay(t, "-config", conf, "-spool", spool, "-metrics-listen", "")

	mx := remoteAddr(t, 0)
	good, _, _ := ca.issue(t, "mx.signed.example")
	other, _, _ := ca.issue(t, "other.example")
	certs := map[string]tls.Certificate{"signed.example": good}
	certs["wrongkey.signed.example"], _, _ = ca.issue(t, "mx.wrongkey.signed.example")
	certs["unsigned.example"], _, _ = ca.issue(t, "mx.unsigned.example")
	certs["daneonly.example"], _, _ = ca.issue(t, "mx.daneonly.example")
	certs["both.signed.example"], _, _ = rogue.issue(t, "mx.both.signed.example")
	certs["testing.example"], _, _ = rogue.issue(t, "mx.testing.example")
	sinks := map[string]*sink{}
	for _, d := range domains {
		c := certs[d]
		sinks[d] = startSinkTLS(t, net.JoinHostPort(mx, ports[d]), &tls.Config{Certificates: []tls.Certificate{c}})
		dns.AddMX(d, 10, "mx."+d)
		dns.AddA("mx."+d, mx)
	}
	tlsa := func(d string, c tls.Certificate) {
		dns.MustAddZone("_" + ports[d] + "._tcp.mx." + d + ". 300 IN TLSA " + dane.NewRecord(c.Leaf, 3, 1, 1).String())
	}
	tlsa("signed.example", certs["signed.example"])
	tlsa("wrongkey.signed.example", other)
	tlsa("unsigned.example", certs["unsigned.example"])
	tlsa("both.signed.example", certs["both.signed.example"])
	dns.Secure("signed.example")
	for _, d := range []string{"testing.example", "both.signed.example"} {
		dns.AddA("mta-sts."+d, stsIP)
		dns.AddTXT("_mta-sts."+d, "v=STSv1; id=20261208;")
	}
	for _, d := range []string{"wrongkey.signed.example", "testing.example"} {
		dns.AddTXT("_smtp._tls."+d, "v=TLSRPTv1; rua=mailto:tlsrpt@reports.example")
	}

	for _, d := range domains {
		res := runDialog(t, r.addr, "127.0.0.1", "SEND alice@example.test user@"+d)
		require.Equal(t, "SENT []", res[0], d)
	}
	assert.Contains(t, waitLog(t, r, `msg=delivery .*rcpt=user@signed.example .*action=sent.*`), `tls="TLS 1.3 authenticated by DANE"`)
	assert.Contains(t, waitLog(t, r, `msg=delivery .*rcpt=user@both.signed.example .*action=sent.*`), `tls="TLS 1.3 authenticated by DANE"`,
		"DANE wins over MTA-STS (RFC 8461 §2)")
	assert.Contains(t, waitLog(t, r, `msg=delivery .*rcpt=user@daneonly.example .*action=deferred.*`),
		"no DNSSEC-validated TLSA records for mx.daneonly.example, and the TLS level is dane-only")
	assert.Contains(t, waitLog(t, r, `msg=delivery .*rcpt=user@wrongkey.signed.example .*action=deferred.*`),
		"does not meet DANE: dane: no TLSA record matches")
	assert.Contains(t, waitLog(t, r, `msg=delivery .*rcpt=user@unsigned.example .*action=sent.*`), `tls="TLS 1.3 unverified"`)
	assert.Regexp(t, `action=sent.*tls="TLS 1.3 unverified[^"]*"`, waitLog(t, r, `msg=delivery .*rcpt=user@testing.example .*action=sent.*`))
	assert.Len(t, sinks["signed.example"].received(), 1)
	assert.Len(t, sinks["unsigned.example"].received(), 1)
	assert.Len(t, sinks["testing.example"].received(), 1, "MTA-STS testing delivers")
	assert.Empty(t, sinks["wrongkey.signed.example"].received())
	assert.Empty(t, sinks["daneonly.example"].received())

	// The relay is down over midnight: its journal is yesterday's.
	r.stop(t)
	jdir := filepath.Join(spool, "tlsrpt")
	today := time.Now().UTC().Format("2006-01-02")
	yesterday := time.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02")
	require.NoError(t, os.Rename(filepath.Join(jdir, today+".jsonl"), filepath.Join(jdir, yesterday+".jsonl")))
	r2 := startRelay(t, "-config", conf, "-spool", spool, "-metrics-listen", "")

	got := reports.waitFor(t, 2, 60*time.Second)
	waitLog(t, r2, `msg=delivery .*rcpt=tlsrpt@reports.example .*action=sent.*`)
	byDomain := map[string]tlsrpt.PolicyReport{}
	for _, m := range got {
		assert.Equal(t, []string{"tlsrpt@reports.example"}, m.Rcpts)
		js := tlsReportJSON(t, m.Data)
		require.NoError(t, tlsrpt.Validate(js), "%s", js)
		var rep tlsrpt.Report
		require.NoError(t, json.Unmarshal(js, &rep))
		assert.Equal(t, "Integration Test", rep.OrganizationName)
		assert.Equal(t, yesterday, rep.DateRange.Start.Format("2006-01-02"))
		require.Len(t, rep.Policies, 1)
		byDomain[rep.Policies[0].Policy.Domain] = rep.Policies[0]
	}
	require.Contains(t, byDomain, "wrongkey.signed.example")
	require.Contains(t, byDomain, "testing.example")
	dn := byDomain["wrongkey.signed.example"]
	assert.Equal(t, tlsrpt.PolicyTLSA, dn.Policy.Type)
	assert.Equal(t, tlsrpt.Summary{Failure: 1}, dn.Summary)
	require.Len(t, dn.FailureDetails, 1)
	assert.Equal(t, "tlsa-invalid", dn.FailureDetails[0].ResultType)
	st := byDomain["testing.example"]
	assert.Equal(t, tlsrpt.PolicySTS, st.Policy.Type)
	assert.Equal(t, []string{"mx.testing.example"}, st.Policy.MXHost)
	assert.Equal(t, tlsrpt.Summary{Failure: 1}, st.Summary, "testing mode: delivered, counted as a failure")
	require.Len(t, st.FailureDetails, 1)
	assert.Equal(t, "certificate-not-trusted", st.FailureDetails[0].ResultType)
	_, err := os.Stat(filepath.Join(jdir, yesterday+".jsonl.sent"))
	assert.NoError(t, err, "the day is marked reported")
}

// tlsReportJSON returns the JSON of a TLS-RPT mail (RFC 8460 §5.3: a
// multipart/report with an application/tlsrpt+gzip part).
func tlsReportJSON(t *testing.T, msg []byte) []byte {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	require.NoError(t, err)
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/report", mt)
	require.Equal(t, "tlsrpt", params["report-type"])
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		require.NoError(t, err, "no application/tlsrpt+gzip part")
		if p.Header.Get("Content-Type") == "application/tlsrpt+gzip" {
			zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, p))
			require.NoError(t, err)
			js, err := io.ReadAll(zr)
			require.NoError(t, err)
			return js
		}
	}
}
