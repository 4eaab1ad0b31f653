package smtpserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// bareBackend is go-smtp with nothing on top: it reads DATA and drops it.
// It is the protocol ceiling the Postern server is measured against.
type bareBackend struct{}

func (bareBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return bareSession{}, nil }

type bareSession struct{}

func (bareSession) Reset()                               {}
func (bareSession) Logout() error                        { return nil }
func (bareSession) Mail(string, *smtp.MailOptions) error { return nil }
func (bareSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (bareSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

var benchBody = "From: a@example.org\r\nTo: b@example.net\r\nSubject: bench\r\nMessage-ID: <x@example.org>\r\n\r\n" +
	strings.Repeat(strings.Repeat("x", 70)+"\r\n", 12) // about 1 KiB

// BenchmarkIngest sends 1 KiB messages over kept sessions to a bare go-smtp
// server and to smtpserver with an empty policy and a hand-off that keeps
// nothing, in the same run. Compare msg/s of the two (aim: postern/bare >=
// 0.9).
func BenchmarkIngest(b *testing.B) {
	for _, sessions := range []int{1, 8} {
		b.Run(fmt.Sprintf("bare/sessions=%d", sessions), func(b *testing.B) {
			gs := smtp.NewServer(bareBackend{})
			gs.Domain = "bench"
			gs.AllowInsecureAuth = true
			l, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(b, err)
			go gs.Serve(l)
			defer gs.Close()
			runIngest(b, l.Addr().String(), sessions)
		})
		b.Run(fmt.Sprintf("postern/sessions=%d", sessions), func(b *testing.B) {
			h := HandoffFunc(func(_ context.Context, _ *postern.Conn, t *postern.Txn, _ *postern.Message) (string, error) {
				return t.ID, nil
			})
			_, addr := startServer(b, Config{Handoff: h})
			runIngest(b, addr, sessions)
		})
	}
}

func runIngest(b *testing.B, addr string, sessions int) {
	clients := make([]*smtp.Client, sessions)
	for i := range clients {
		c, err := smtp.Dial(addr)
		require.NoError(b, err)
		require.NoError(b, c.Hello("bench.client"))
		clients[i] = c
	}
	defer func() {
		for _, c := range clients {
			c.Quit()
		}
	}()
	var wg sync.WaitGroup
	per := b.N / sessions
	b.ResetTimer()
	start := time.Now()
	for i, c := range clients {
		n := per
		if i == 0 {
			n += b.N % sessions
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if err := c.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(benchBody)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}
