package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/postern/postern"
)

// recipients is a static list of valid addresses in the local domains, so
// unknown users are refused at RCPT (550 5.1.1) instead of being accepted
// and bounced later (Postfix local_recipient_maps). The queue and routing
// work (call-ahead verification) will extend this; the reply stays the
// same, so the harvest guard keeps counting it.
type recipients struct {
	local map[string]bool // local domains
	valid map[string]bool // lower-cased addresses
}

func loadRecipients(path string, domains []string) (*recipients, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("recipients: %w", err)
	}
	defer f.Close()
	r := &recipients{local: map[string]bool{}, valid: map[string]bool{}}
	for _, d := range domains {
		r.local[strings.ToLower(d)] = true
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		addr := strings.ToLower(strings.Fields(line)[0])
		if strings.Count(addr, "@") != 1 || postern.AddrDomain(addr) == "" || postern.AddrLocal(addr) == "" {
			return nil, fmt.Errorf("recipients: %s:%d: %q is not user@domain", path, n, addr)
		}
		r.valid[addr] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("recipients: %s: %w", path, err)
	}
	return r, nil
}

func (r *recipients) Name() string { return "recipients" }

// CheckRcpt refuses unknown users of the local domains. Postmaster is
// always valid (RFC 5321 §4.5.1); other domains are not this filter's
// business (relay control decides on them).
func (r *recipients) CheckRcpt(_ context.Context, _ *postern.Conn, _ *postern.Txn, rc *postern.Rcpt) (postern.Verdict, error) {
	dom := rc.Domain()
	if !r.local[dom] || strings.EqualFold(postern.AddrLocal(rc.Addr), "postmaster") {
		return postern.Pass, nil
	}
	addr := strings.ToLower(postern.AddrLocal(rc.Addr)) + "@" + dom
	if r.valid[addr] {
		return postern.Pass, nil
	}
	return postern.Rejected(550, postern.ESC(5, 1, 1),
		"<"+rc.Addr+">: Recipient address rejected: User unknown in local recipient table",
		"recipients: "+addr+" not in the list"), nil
}
