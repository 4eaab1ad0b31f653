package dane_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	"github.com/postern/postern/route/dane"
)

// A server's certificate against the "3 1 1" record its zone publishes:
// DANE-EE, SubjectPublicKeyInfo, SHA2-256. The names and dates of the
// certificate do not matter.
func Example() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "whatever"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1, 0)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)

	published := dane.NewRecord(cert, dane.DANEEE, dane.SelectorSPKI, dane.MatchSHA256).String()
	rec, err := dane.ParseRecord(published)
	if err != nil {
		panic(err)
	}
	fmt.Println(rec.Usable())
	fmt.Println(dane.Verify([]*x509.Certificate{cert}, []dane.Record{rec}, []string{"mx.example.net"}, time.Now()))
	// Output:
	// true
	// <nil>
}
