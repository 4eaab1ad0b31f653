package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzParseConfig: any file gets a configuration or an ErrConfig that
// names the file, never a panic; what is accepted resolves into settings.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		"",
		"[policy]\norder = [\"trust\", \"access\", \"relay\", \"scan\"]\n",
		"[policy]\norder = [\"trust\", \"relay\", \"relay\"]\n",
		"[limits]\noutbound_message_rate = \"unlimited\"\noutbound_exempt = [\"10.0.0.0/8\"]\n",
		"[limits]\noutbound_recipient_rate = \"5/0s\"\n",
		"[smtp]\nmax_recipients = -1\n[scan]\nmax_mime_depth = 3\n",
		"[[dkim]]\ndomain = \"a\"\n",
		"local_domains = [\"a\", 1]\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := parseConfig([]byte(doc), "fuzz.toml")
		if err != nil {
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "fuzz.toml") {
				t.Fatalf("error without ErrConfig or the file name: %v", err)
			}
			return
		}
		if err := cfg.applyDefaults(); err != nil {
			t.Fatal(err)
		}
		s, err := cfg.resolved()
		if err != nil {
			return // files named by the configuration are checked when built
		}
		if s.Policy.Order != nil && checkOrder(s.Policy.Order) != nil {
			t.Fatalf("an accepted order fails its own check: %q", s.Policy.Order)
		}
	})
}

// FuzzPolicyOrder: checkOrder accepts exactly the lists that keep the
// rules, stated here a second way.
func FuzzPolicyOrder(f *testing.F) {
	f.Add("trust,access,relay,dnsbl,ratelimit,outbound-ratelimit,harvest-guard,verify,spf,auth-verify,scan,dkim-sign")
	f.Add("trust,relay,scan,auth-verify")
	f.Add("relay,trust")
	f.Add("trust,scan,relay")
	f.Add("trust,relay,verify,harvest-guard")
	f.Add("trust,relay,dkim-sign,scan")
	f.Add("trust,relay,relay")
	f.Add("trust,relay,Scan")
	f.Fuzz(func(t *testing.T, list string) {
		order := strings.Split(list, ",")
		err := checkOrder(order)
		if (err == nil) != keepsRules(order) {
			t.Fatalf("checkOrder(%q) = %v, the rules say %v", order, err, keepsRules(order))
		}
	})
}

func keepsRules(order []string) bool {
	pos := map[string]int{}
	for i, n := range order {
		if _, dup := pos[n]; dup || !slices.Contains(defaultOrder, n) {
			return false
		}
		pos[n] = i
	}
	relay, ok := pos["relay"]
	if !ok || order[0] != "trust" {
		return false
	}
	if a, ok := pos["access"]; relay > 2 || relay == 2 && (!ok || a != 1) {
		return false
	}
	if g, ok := pos["harvest-guard"]; ok {
		if v, ok := pos["verify"]; ok && v < g {
			return false
		}
	}
	if d, ok := pos["dkim-sign"]; ok && d != len(order)-1 {
		return false
	}
	return true
}

// FuzzParseRate: a rate is "N/duration" or "unlimited"; what is accepted
// prints back to itself.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"300/1h", "unlimited", "", "0/1h", "5/0s", "1/1ns", "9999999999999999999/1h", "3/-1m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseRate(s)
		if err != nil {
			return
		}
		if r.Unlimited() {
			return
		}
		if r.Count <= 0 || r.Per <= 0 {
			t.Fatalf("%q parsed to %v", s, r)
		}
		back, err := parseRate(r.String())
		if err != nil || back != r {
			t.Fatalf("%q -> %v -> %v, %v", s, r, back, err)
		}
	})
}
