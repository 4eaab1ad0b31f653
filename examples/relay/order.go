package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/postern/postern"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/dnsbl"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/route"
	"github.com/postern/postern/scan"
	"github.com/postern/postern/smtpserver/access"
)

// outboundFilterName names the rate limit of the site's own senders.
const outboundFilterName = "outbound-ratelimit"

// milterFilterName names the external milters ([[milter]]), one chain of
// them in the order of the tables.
const milterFilterName = "milter"

// defaultOrder is the order of the relay's filters when policy.order is
// not set, by the names they report (Name()). The relay ran them in this
// order before the order was a key:
//   - trust first: it decides who is the site's own before anyone asks;
//   - access before relay control: Connect: OK/RELAY exempts a client from
//     the DNS lists (sendmail's check_relay answers before its RBL rules);
//     at RCPT its OK/RELAY only continue, so it cannot open the relay;
//   - relay control before anything that could accept a recipient;
//   - the harvest guard before recipient verification, whose 550 5.1.1
//     answers it counts;
//   - greylisting after recipient verification: an unknown recipient
//     hears 550 at once, not 451 and then 550;
//   - sender authentication (SPF at MAIL, DKIM/DMARC at DATA), then the
//     content scan, then the external milters (they see the message as
//     the relay's own filters left it, as Postfix's smtpd_milters see
//     what its restrictions passed), then DKIM signing, the last header
//     edit.
var defaultOrder = []string{
	access.TrustFilterName, access.FilterName, access.RelayFilterName, auth.HostFilterName, dnsbl.FilterName,
	ratelimit.FilterName, outboundFilterName, ratelimit.GuardName, route.FilterName, ratelimit.GreylistName,
	auth.SPFFilterName, auth.VerifyFilterName, scan.FilterName, milterFilterName, auth.SignFilterName,
}

// filterKeys says which keys turn each filter on, for the error about a
// filter that is configured but missing from policy.order.
var filterKeys = map[string]string{
	access.TrustFilterName: "always on",
	access.RelayFilterName: "always on",
	access.FilterName:      "policy.access",
	auth.HostFilterName:    "policy.helo_checks or policy.client_checks",
	dnsbl.FilterName:       "dnsbl.zones, dnsbl.allow or dnsbl.domain",
	ratelimit.FilterName:   "limits.message_rate or limits.recipient_rate",
	outboundFilterName:     "limits.outbound_message_rate or limits.outbound_recipient_rate",
	ratelimit.GuardName:    "limits.harvest_threshold",
	route.FilterName:       "policy.recipients, policy.callahead or delivery.maildir_create = false",
	ratelimit.GreylistName: "greylist.enabled",
	auth.SPFFilterName:     "auth.check",
	auth.VerifyFilterName:  "always on: it removes forged Authentication-Results",
	scan.FilterName:        "always on: the MIME walk",
	milterFilterName:       "[[milter]]",
	auth.SignFilterName:    "[[dkim]]",
}

// checkOrder checks a policy.order list on its own: every name known, none
// twice, and the orders that are not a matter of taste kept.
func checkOrder(order []string) error {
	seen := map[string]int{}
	for i, name := range order {
		if !slices.Contains(defaultOrder, name) {
			return fmt.Errorf("unknown filter %q (item %d); the filters are %s", name, i+1, strings.Join(defaultOrder, ", "))
		}
		if j, ok := seen[name]; ok {
			return fmt.Errorf("%s is listed twice (items %d and %d)", name, j+1, i+1)
		}
		seen[name] = i
	}
	at := func(name string) int {
		if i, ok := seen[name]; ok {
			return i
		}
		return -1
	}
	switch {
	case at(access.TrustFilterName) != 0:
		return errors.New("trust must come first: every other filter asks whether the client is the site's own")
	case at(access.RelayFilterName) < 0:
		return errors.New("relay (relay control) must be listed: without it the relay would be open")
	}
	for _, name := range order[1:at(access.RelayFilterName)] {
		if name != access.FilterName {
			return fmt.Errorf("relay (relay control) must come right after trust (or after access): %s before it could accept a recipient relay control has not approved", name)
		}
	}
	if g, v := at(ratelimit.GuardName), at(route.FilterName); g >= 0 && v >= 0 && g > v {
		return errors.New("harvest-guard must come before verify: it counts the unknown recipients verify refuses, and a held source must learn nothing more")
	}
	if d := at(auth.SignFilterName); d >= 0 && d != len(order)-1 {
		return errors.New("dkim-sign must come last: a header edit after it would break the signature")
	}
	return nil
}

// orderFilters puts the built filters in the order of policy.order. A
// built filter the order leaves out is an error: a list that forgets the
// virus scan must not silently turn it off.
func orderFilters(s *Config, built map[string]postern.Filter) ([]postern.Entry, []string, error) {
	var entries []postern.Entry
	var names []string
	for _, name := range s.Policy.Order {
		if f, ok := built[name]; ok {
			entries = append(entries, postern.Entry{Filter: f})
			names = append(names, name)
		}
	}
	for _, name := range defaultOrder {
		if _, ok := built[name]; ok && !slices.Contains(s.Policy.Order, name) {
			return nil, nil, orderError(s, "%s is configured (%s) but not listed; put it where it should run", name, filterKeys[name])
		}
	}
	return entries, names, nil
}

// orderError names policy.order and where it was set.
func orderError(s *Config, format string, args ...any) error {
	where := "policy.order"
	if s.Policy.orderAt != "" {
		where = s.Policy.orderAt + ": policy.order"
	}
	return fmt.Errorf("%w: %s: %s", ErrConfig, where, fmt.Sprintf(format, args...))
}

// orderSource says where the order in force comes from.
func orderSource(s *Config) string {
	switch {
	case slices.Equal(s.Policy.Order, defaultOrder):
		return "default order"
	case s.Policy.orderAt != "":
		return "policy.order, " + s.Policy.orderAt
	}
	return "policy.order"
}
