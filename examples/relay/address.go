package main

import (
	"fmt"
	"net/mail"

	"github.com/postern/postern"
)

// sitePostmaster is where mail for the bare <Postmaster> goes:
// delivery.postmaster, else postmaster at the first domain the relay
// accepts mail for (its route leads to the site's mail store).
func (s *Config) sitePostmaster() string {
	switch {
	case s.Delivery.Postmaster != "":
		return s.Delivery.Postmaster
	case len(s.domains) > 0:
		return "postmaster@" + s.domains[0]
	}
	return "postmaster@" + s.hostnameOrDefault()
}

// envelopeAddr reads an address key, written as in mail (user@example.org,
// <user@example.org>, "john smith"@example.org, Name <user@example.org>),
// and returns the canonical form the queue and the lookups use.
func envelopeAddr(v string) (string, error) {
	m, err := mail.ParseAddress(v)
	if err != nil {
		return "", fmt.Errorf("%q is not an address: %v", v, err)
	}
	a, err := postern.SplitAddress(m.Address)
	if err != nil || a.Domain == "" {
		return "", fmt.Errorf("%q is not an address a server can be given", v)
	}
	return a.String(), nil
}
