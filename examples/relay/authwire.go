package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/postern/postern"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/auth/directory"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/route"
	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/scan"
	"github.com/postern/postern/smtpserver/access"
)

// authParts are the sender-authentication pieces: built once, shared by
// the inbound and the submission listeners.
type authParts struct {
	spf     *auth.SPFFilter    // inbound MAIL (check) and DATA (Received-SPF)
	verify  *auth.VerifyFilter // DATA: DKIM, DMARC, Authentication-Results
	sign    *auth.SignFilter   // DATA, last: mail of trusted and authenticated clients
	creds   *auth.Credentials  // SMTP AUTH on the submission ports
	senders *auth.SenderFilter // MAIL on the submission ports
	sendMap *auth.SenderMap
	dir     *directory.Directory // logins and addresses, with ldap.uses "auth"
	dirErr  postern.ErrorPolicy
	tls     *tls.Config
	iprev   *auth.IPRev        // reverse DNS of clients; nil with smtp.reverse_dns off
	hosts   *auth.HostFilter   // policy.helo_checks and client_checks; nil without
	dns     *resolver.Resolver // the generation's one resolver, shared by every DNS user
}

func buildAuth(s *Config, res *resolver.Resolver, log *slog.Logger, dir *directory.Directory) (*authParts, error) {
	a := &authParts{dns: res}
	if dir != nil && s.LDAP.uses("auth") {
		a.dir, a.dirErr = dir, s.LDAP.OnError
	}
	if err := buildHostParts(s, a, log); err != nil {
		return nil, err
	}
	for _, build := range []func(*Config, *slog.Logger) error{a.buildChecks, a.buildSubmission, a.buildSigning} {
		if err := build(s, log); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// buildChecks makes the sender authentication of inbound mail (auth.check)
// and the removal of forged Authentication-Results fields.
func (a *authParts) buildChecks(s *Config, log *slog.Logger) error {
	// Mail from one domain asks the same SPF, DKIM key and DMARC names
	// again and again: the resolver's cache keeps the answers.
	res := a.dns
	servID := s.Auth.AuthservID
	if servID == "" {
		servID = s.hostnameOrDefault()
	}
	switch s.Auth.Check {
	case "off":
	case "tag", "enforce":
		ck, err := auth.NewSPFChecker(auth.SPFConfig{Resolver: res, Logger: log})
		if err != nil {
			return err
		}
		fc := auth.SPFFilterConfig{Checker: ck, Receiver: servID, Logger: log}
		mode := auth.DMARCTagOnly
		if s.Auth.Check == "enforce" {
			// RFC 7208 §8.4: a fail may be refused; softfail and the rest
			// are only recorded.
			fc.Actions = map[auth.Status]postern.Action{auth.Fail: postern.Reject}
			mode = auth.DMARCEnforce
		}
		if a.spf, err = auth.NewSPFFilter(fc); err != nil {
			return err
		}
		dk, err := auth.NewDKIMVerifier(auth.DKIMVerifyConfig{Resolver: res, Logger: log})
		if err != nil {
			return err
		}
		dm, err := auth.NewDMARCChecker(auth.DMARCConfig{Resolver: res, Logger: log})
		if err != nil {
			return err
		}
		if a.verify, err = auth.NewVerifyFilter(auth.VerifyFilterConfig{AuthServID: servID, DKIM: dk, DMARC: dm,
			Mode: mode, Logger: log}); err != nil {
			return err
		}
	default:
		return fmt.Errorf("-auth-check: %q is not off, tag or enforce", s.Auth.Check)
	}
	if a.verify == nil {
		// Even without checks, mail must not carry Authentication-Results
		// fields that claim to be ours (RFC 8601 §5); with nothing checked
		// none of ours is added.
		var err error
		if a.verify, err = auth.NewVerifyFilter(auth.VerifyFilterConfig{AuthServID: servID, RemoveOnly: true, Logger: log}); err != nil {
			return err
		}
	}
	return nil
}

// buildSubmission loads the certificate and what the submission ports
// and the quarantine page need: credentials and sender bindings.
func (a *authParts) buildSubmission(s *Config, log *slog.Logger) error {
	if s.TLS.Cert != "" || s.TLS.Key != "" {
		cert, err := tls.LoadX509KeyPair(s.TLS.Cert, s.TLS.Key)
		if err != nil {
			return fmt.Errorf("tls.cert/tls.key (-tls-cert/-tls-key): %w", err)
		}
		// Session tickets off: see smtpserver.Config.TLSSessionTickets.
		a.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, SessionTicketsDisabled: true}
	}
	if s.Submission.Listen != "" || s.Submission.ListenTLS != "" {
		if a.tls == nil {
			return fmt.Errorf("submission.listen and listen_tls (-submission, -submissions) need tls.cert and tls.key: passwords only travel encrypted")
		}
		if (s.Submission.Credentials == "" || s.Submission.Senders == "") && a.dir == nil {
			return fmt.Errorf("submission.listen and listen_tls (-submission, -submissions) need submission.credentials (who may log in) and submission.senders (which addresses each user may send as), or ldap.uses = [\"auth\"]")
		}
	}
	if s.Submission.Credentials != "" {
		var err error
		if a.creds, err = auth.NewCredentials(auth.CredentialsConfig{Path: s.Submission.Credentials, Logger: log}); err != nil {
			return fmt.Errorf("submission.credentials: %w", err)
		}
	}
	if s.Submission.Senders != "" {
		var err error
		if a.sendMap, err = auth.NewSenderMap(auth.SenderMapConfig{Path: s.Submission.Senders, AllowOwnAddress: true, Logger: log}); err != nil {
			return fmt.Errorf("submission.senders: %w", err)
		}
	}
	if a.sendMap != nil || a.dir != nil {
		// A user sends as what the senders file or their directory entry
		// gives them.
		fc := auth.SenderFilterConfig{Map: a.sendMap, IgnoreHeader: !s.Submission.BindFrom, OnDirectoryError: a.dirErr, Logger: log}
		if a.dir != nil {
			fc.Directory = a.dir
		}
		var err error
		if a.senders, err = auth.NewSenderFilter(fc); err != nil {
			return err
		}
	}
	return nil
}

// buildSigning makes DKIM signing of the site's own mail.
func (a *authParts) buildSigning(s *Config, log *slog.Logger) error {
	if len(s.DKIM) > 0 {
		var keys []auth.DKIMKey
		for i, dk := range s.DKIM {
			k, err := auth.LoadPrivateKey(dk.Key)
			if err != nil {
				return fmt.Errorf("dkim[%d] (%s, selector %s): %w", i, dk.Domain, dk.Selector, err)
			}
			keys = append(keys, auth.DKIMKey{Domain: dk.Domain, Selector: dk.Selector, Signer: k})
		}
		signer, err := auth.NewDKIMSigner(auth.DKIMSignConfig{Keys: keys, Logger: log})
		if err != nil {
			return err
		}
		// Authenticated mail is signed only when its From is the user's,
		// whether or not submission.bind_from refuses it; without a
		// senders file it is not signed at all.
		var senders auth.SenderAllower
		if all := a.allowers(); len(all) > 0 {
			senders = all
		}
		if a.sign, err = auth.NewSignFilter(auth.SignFilterConfig{Signer: signer, Senders: senders, Logger: log}); err != nil {
			return err
		}
	}
	return nil
}

// login is the password check of the submission ports and the
// quarantine page: the credentials file, then the directory.
func (a *authParts) login() loginChecker { return loginChecker{creds: a.creds, dir: a.dir} }

// allowers are the sources of the addresses a user may send as (and
// whose quarantined mail they see).
func (a *authParts) allowers() anyAllower {
	var all anyAllower
	if a.sendMap != nil {
		all = append(all, a.sendMap)
	}
	if a.dir != nil {
		all = append(all, a.dir)
	}
	return all
}

// newAuthLimiter is the login limit of the submission ports and the
// quarantine page: one limiter for both, counting failures per client
// network (/32, /64) and per account in the relay's counter store, so
// relays sharing Redis share the locks. It outlives reloads.
func newAuthLimiter(s *Config, store ratelimit.Store, log *slog.Logger) (*ratelimit.AuthLimiter, error) {
	return ratelimit.NewAuthLimiter(ratelimit.AuthConfig{Store: store, OnError: s.Redis.OnError, Logger: log})
}

// watch reloads the credentials and sender files when they change.
func (a *authParts) watch(ctx context.Context) {
	if a == nil {
		return
	}
	if a.creds != nil {
		go a.creds.Run(ctx)
	}
	if a.sendMap != nil {
		go a.sendMap.Run(ctx)
	}
}

// submissionChain is the policy of the submission ports (RFC 6409): the
// server already requires TLS and AUTH, so every transaction here is
// authenticated and may relay. The sender binding decides first which
// MAIL FROM a user may give; then, in the order of policy.order, relay
// control, the outbound rate limit (the same filter, and counts, as port
// 25's), recipient verification, the removal of forged
// Authentication-Results fields, the content scan and DKIM signing.
func submissionChain(s *Config, a *authParts, sc *scanning, pol *policy, log *slog.Logger, obs postern.Observer) (*postern.Chain, error) {
	relay, err := access.NewRelayControl(access.RelayConfig{Map: pol.amap, LocalDomains: s.domains,
		RelaySubdomains: s.Policy.RelaySubdomains, Logger: log})
	if err != nil {
		return nil, err
	}
	var entries []postern.Entry
	if a.senders != nil {
		entries = append(entries, postern.Entry{Filter: a.senders})
	}
	built := map[string]postern.Filter{access.RelayFilterName: relay, auth.VerifyFilterName: a.verify}
	if pol.outbound != nil {
		built[outboundFilterName] = pol.outbound
	}
	if pol.rcptVerify != nil {
		built[route.FilterName] = pol.rcptVerify
	}
	if sc != nil {
		built[scan.FilterName] = sc.filter
	}
	if pol.milters != nil {
		built[milterFilterName] = pol.milters
	}
	if a.sign != nil {
		built[auth.SignFilterName] = a.sign
	}
	// Port 25's chain was built from the same order and refused one that
	// leaves a filter out, so every filter here is listed.
	for _, name := range s.Policy.Order {
		if f, ok := built[name]; ok {
			entries = append(entries, postern.Entry{Filter: f})
		}
	}
	return postern.NewChain(postern.ChainConfig{Name: "submission", Entries: entries, Observer: obs})
}
