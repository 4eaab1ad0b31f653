package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/postern/postern/auth/directory"
	"github.com/postern/postern/scan"
	"github.com/postern/postern/scan/clamav"
	"github.com/postern/postern/scan/rspamd"
	"github.com/postern/postern/scan/spamd"
)

// scanning is the content filter and what it reloads.
type scanning struct {
	filter *scan.Filter
	policy *scan.PolicyWatcher // nil without -scan-policy
}

// buildScan wires the content filter. It always walks messages (within
// the walker's limits, so a hostile MIME tree is refused cheaply); virus
// scanners, spam scorers, the attachment policy and per-recipient policy
// come with their flags.
//
// dir, with ldap.uses "spam_policy", gives recipients' policies first.
func buildScan(s *Config, log *slog.Logger, dir *directory.Directory, front *frontParts) (*scanning, error) {
	sc := &scanning{}
	walker, err := scan.NewWalker(scan.WalkerConfig{Limits: scan.Limits{MaxSize: s.maxSize,
		MaxDepth: s.Scan.MaxMimeDepth, MaxParts: s.Scan.MaxMimeParts}})
	if err != nil {
		return nil, err
	}
	cfg := scan.FilterConfig{Walker: walker, TagScore: s.Scan.SpamTagScore, RejectScore: s.Scan.SpamRejectScore,
		SubjectPrefix: s.Scan.SpamSubject, Logger: log, OnGreylist: s.front.rspamdGrey, OnSoftReject: s.front.rspamdSoft,
		IgnoreScorerHeaders: !s.Scan.RspamdHeaders}
	if front != nil && front.grey != nil {
		cfg.Greylist = front.checkMessage
	}
	if s.Scan.VirusAction != "" {
		if cfg.OnVirus, err = scan.ParseAction(s.Scan.VirusAction); err != nil || cfg.OnVirus == scan.ActLog {
			return nil, fmt.Errorf("-virus-action: %q is not reject, quarantine or discard", s.Scan.VirusAction)
		}
	}
	if s.Scan.SpamAction != "" {
		if cfg.OnSpamReject, err = scan.ParseAction(s.Scan.SpamAction); err != nil || cfg.OnSpamReject == scan.ActLog {
			return nil, fmt.Errorf("-spam-action: %q is not reject, quarantine or discard", s.Scan.SpamAction)
		}
	}
	// Virus scanning fails closed (451: the client retries) and spam
	// scoring fails open, unless scan.virus_on_error or spam_on_error say
	// otherwise.
	virusPolicy, spamPolicy := s.Scan.VirusOnError, s.Scan.SpamOnError
	if len(s.Scan.Clamd) > 0 {
		c, err := clamav.New(clamav.Config{Addrs: s.Scan.Clamd, MaxSize: s.maxSize + 1<<20, Logger: log})
		if err != nil {
			return nil, err
		}
		cfg.Virus = append(cfg.Virus, scan.ScannerEntry{Scanner: c, OnError: virusPolicy})
	}
	if len(s.Scan.Rspamd) > 0 {
		c, err := rspamd.New(rspamd.Config{Addrs: s.Scan.Rspamd, Logger: log})
		if err != nil {
			return nil, err
		}
		cfg.Spam = append(cfg.Spam, scan.ScannerEntry{Scanner: c, OnError: spamPolicy})
	}
	if len(s.Scan.Spamd) > 0 {
		c, err := spamd.New(spamd.Config{Addrs: s.Scan.Spamd, Logger: log})
		if err != nil {
			return nil, err
		}
		cfg.Spam = append(cfg.Spam, scan.ScannerEntry{Scanner: c, OnError: spamPolicy})
	}
	if s.Scan.BanAttachments {
		ac := scan.AttachmentConfig{}
		// Archives nothing can look into are refused unless told
		// otherwise; "accept" lets them through, logged.
		switch s.Scan.UnopenableArchives {
		case "quarantine":
			ac.UnopenableArchives = scan.ActQuarantine
		case "accept":
			ac.UnopenableArchives = scan.ActLog
		}
		if cfg.Attachments, err = scan.NewAttachmentPolicy(ac); err != nil {
			return nil, err
		}
	} else if s.Scan.UnopenableArchives != "" && s.Scan.UnopenableArchives != "reject" {
		log.Warn("scan.unopenable_archives has no effect without scan.ban_attachments")
	}
	if s.Scan.Policy != "" {
		if sc.policy, err = scan.NewPolicyWatcher(s.Scan.Policy, scan.PolicyWatcherConfig{Logger: log}); err != nil {
			return nil, fmt.Errorf("scan.policy: %w", err)
		}
		cfg.Policy = sc.policy
	}
	if dir != nil && s.LDAP.uses("spam_policy") {
		cfg.Lookup, cfg.OnLookupError = dir, s.LDAP.OnError
	}
	if sc.filter, err = scan.NewFilter(cfg); err != nil {
		return nil, err
	}
	return sc, nil
}

func (sc *scanning) watch(ctx context.Context) {
	if sc.policy != nil {
		go sc.policy.Run(ctx)
	}
}
