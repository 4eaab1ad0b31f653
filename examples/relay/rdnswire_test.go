package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/auth"
)

func TestReverseDNSConfig(t *testing.T) {
	for _, tt := range []struct{ name, doc, want string }{
		{"bad helo check", "[policy]\nhelo_checks = [\"resolves\", \"fqdn\"]\n", `relay.toml:2: policy.helo_checks: "fqdn" is not resolves, not_us or literal`},
		{"bad client check", "[policy]\n\nclient_checks = [\"rdns\"]\n", `relay.toml:3: policy.client_checks: "rdns" is not ptr or name`},
		{"client check without lookup", "[smtp]\nreverse_dns = false\n[policy]\nclient_checks = [\"ptr\"]\n", "relay.toml:4: policy.client_checks: needs smtp.reverse_dns"},
		{"timeout past the connect stage", "[smtp]\nreverse_dns_timeout = \"1m\"\n", "relay.toml:2: smtp.reverse_dns_timeout: 1m0s is longer than the connect stage may last (30s)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tt.doc), "relay.toml")
			require.ErrorIs(t, err, ErrConfig)
			assert.Contains(t, err.Error(), tt.want)
		})
	}

	cfg := &Config{}
	require.NoError(t, cfg.applyDefaults())
	s, err := cfg.resolved()
	require.NoError(t, err)
	assert.True(t, s.SMTP.ReverseDNS, "on by default")
	assert.Equal(t, 10*time.Second, s.SMTP.ReverseDNSTimeout.Duration)
	assert.Zero(t, s.hostChecks, "no host checks by default")

	var errb bytes.Buffer
	_, _, _, err = loadWithFlags("relay serve", []string{"-reverse-dns=false", "-reverse-dns-timeout", "3s",
		"-helo-checks", "resolves,not_us,literal", "-client-checks", "name"}, &errb, nil)
	require.Error(t, err, "client checks need the lookup")
	c, _, _, err := loadWithFlags("relay serve", []string{"-reverse-dns-timeout", "3s",
		"-helo-checks", "resolves,not_us,literal", "-client-checks", "ptr,name"}, &errb, nil)
	require.NoError(t, err, errb.String())
	s, err = c.resolved()
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, s.SMTP.ReverseDNSTimeout.Duration)
	assert.Equal(t, auth.CheckHELOResolves|auth.CheckHELONotUs|auth.CheckHELOLiteral|auth.CheckClientPTR|auth.CheckClientName, s.hostChecks)

	// The parts: a lookup when on, a filter when checks are asked.
	a := &authParts{}
	require.NoError(t, buildHostParts(s, a, nil))
	assert.NotNil(t, a.iprev)
	assert.NotNil(t, a.hosts)
	s.SMTP.ReverseDNS, s.hostChecks = false, 0
	a = &authParts{}
	require.NoError(t, buildHostParts(s, a, nil))
	assert.Nil(t, a.iprev)
	assert.Nil(t, a.hosts)
}
