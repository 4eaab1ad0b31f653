package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/postern/postern/auth"
)

// dkimCommand is "relay dkim keygen": make a signing key and print the
// DNS record to publish for it.
func dkimCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "keygen" {
		fmt.Fprintln(stderr, "usage: relay dkim keygen -domain example.org -selector s1 [-alg ed25519|rsa] [-bits 2048] -out key.pem")
		return 2
	}
	fs := flag.NewFlagSet("relay dkim keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	domain := fs.String("domain", "", "signing `domain` (d=)")
	selector := fs.String("selector", "", "`selector` (s=)")
	alg := fs.String("alg", auth.KeyRSA, "key algorithm: rsa or ed25519 (RFC 8463; not every verifier knows it yet, so sign with both for a while)")
	bits := fs.Int("bits", 2048, "RSA key size in bits")
	out := fs.String("out", "", "`file` for the private key (PEM, mode 0600); it must not exist")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *domain == "" || *selector == "" || *out == "" {
		fmt.Fprintln(stderr, "relay dkim keygen: -domain, -selector and -out are required")
		return 2
	}
	if *alg != auth.KeyRSA {
		*bits = 0
	}
	keyPEM, txt, err := auth.GenerateKey(*alg, *bits)
	if err != nil {
		fmt.Fprintln(stderr, "relay dkim keygen:", err)
		return 1
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		_, err = f.Write(keyPEM)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "relay dkim keygen:", err)
		return 1
	}
	// A zone-file line; strings over 255 octets are split (RFC 1035
	// §3.3.14), as a 2048-bit RSA key needs.
	var quoted []string
	for _, s := range auth.SplitTXT(txt) {
		quoted = append(quoted, `"`+s+`"`)
	}
	fmt.Fprintf(stdout, "%s._domainkey.%s. IN TXT ( %s )\n", *selector, strings.TrimSuffix(*domain, "."), strings.Join(quoted, " "))
	fmt.Fprintf(stdout, "; then serve with: -dkim-key %s:%s:%s\n", *domain, *selector, *out)
	return 0
}
