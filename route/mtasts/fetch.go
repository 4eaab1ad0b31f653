package mtasts

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// fetch gets and parses https://mta-sts.<domain>/.well-known/mta-sts.txt
// (RFC 8461 §3.3). On failure it returns the RFC 8460 result type.
func (c *Client) fetch(ctx context.Context, domain string) (Policy, string, error) {
	host := "mta-sts." + domain
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            func(ctx context.Context, _, _ string) (net.Conn, error) { return c.dialHost(ctx, host) },
		TLSClientConfig:        &tls.Config{RootCAs: c.roots, ServerName: host, MinVersion: tls.VersionTLS12},
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 16 << 10,
		ForceAttemptHTTP2:      false,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr,
		// §3.3: "HTTP 3xx redirects MUST NOT be followed".
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	url := "https://" + host
	if c.port != 443 {
		url += ":" + strconv.Itoa(int(c.port))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/.well-known/mta-sts.txt", nil)
	if err != nil {
		return Policy{}, FailureFetch, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		if tlsError(err) {
			return Policy{}, FailureWebPKI, fmt.Errorf("mtasts: %s: %w", host, err)
		}
		return Policy{}, FailureFetch, fmt.Errorf("mtasts: %s: %w", host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Policy{}, FailureFetch, fmt.Errorf("mtasts: %s: HTTP status %s", host, resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return Policy{}, FailureInvalid, fmt.Errorf("mtasts: %s: media type %q, not text/plain", host, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return Policy{}, FailureFetch, fmt.Errorf("mtasts: %s: %w", host, err)
	}
	if len(body) > MaxPolicySize {
		return Policy{}, FailureInvalid, fmt.Errorf("mtasts: %s: policy larger than %d bytes", host, MaxPolicySize)
	}
	p, err := ParsePolicy(string(body))
	if err != nil {
		return Policy{}, FailureInvalid, fmt.Errorf("mtasts: %s: %w", host, err)
	}
	return p, "", nil
}

// dialHost resolves the policy host through the resolver and connects
// to its addresses in turn.
func (c *Client) dialHost(ctx context.Context, host string) (net.Conn, error) {
	var addrs []netip.Addr
	var lastErr error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := c.res.Lookup(ctx, host, qt)
		if err != nil {
			lastErr = err
			continue
		}
		for _, rr := range a.Records {
			switch r := rr.(type) {
			case *dns.A:
				if ip, ok := netip.AddrFromSlice(r.A); ok {
					addrs = append(addrs, ip.Unmap())
				}
			case *dns.AAAA:
				if ip, ok := netip.AddrFromSlice(r.AAAA); ok {
					addrs = append(addrs, ip)
				}
			}
		}
	}
	if len(addrs) == 0 {
		if lastErr == nil {
			lastErr = errors.New("no address")
		}
		return nil, fmt.Errorf("mtasts: %s: %w", host, lastErr)
	}
	for _, a := range addrs {
		conn, err := c.dial(ctx, "tcp", netip.AddrPortFrom(a, c.port).String())
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// diskPolicy is a policy as kept on disk: the text is parsed again when
// read, so a damaged file is no policy.
type diskPolicy struct {
	ID      string    `json:"id"`
	Fetched time.Time `json:"fetched"`
	Text    string    `json:"policy"`
}

func (c *Client) path(domain string) string { return filepath.Join(c.dir, domain+".json") }

// save writes the policy to a temporary file and renames it into place.
func (c *Client) save(p *Policy) error {
	b, err := json.Marshal(diskPolicy{ID: p.ID, Fetched: p.Fetched.UTC(), Text: p.Text})
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), c.path(p.Domain))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// load reads the policy kept on disk for domain, nil if none or damaged.
func (c *Client) load(domain string) *Policy {
	b, err := os.ReadFile(c.path(domain))
	if err != nil {
		return nil
	}
	var d diskPolicy
	if json.Unmarshal(b, &d) != nil {
		return nil
	}
	p, err := ParsePolicy(d.Text)
	if err != nil || d.ID == "" {
		return nil
	}
	p.Domain, p.ID, p.Fetched = domain, d.ID, d.Fetched
	return &p
}
