package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/internal/proc"
)

// The harness runs two helpers as child processes of its own binary, so
// that what they cost is not counted where the harness measures:
//
//	bench helper-bare -listen ADDR   the bare go-smtp server of the ingest benchmark
//	bench helper-crowd -addr A -n N  N idle connections for the greet pause benchmark
//	bench helper-hold -mode M        the server that holds them (greetpause or bare)

func helperMain(name string, args []string) int {
	switch name {
	case "helper-bare":
		return helperBare(args)
	case "helper-crowd":
		return helperCrowd(args)
	case "helper-hold":
		return helperHold(args)
	}
	fmt.Fprintf(os.Stderr, "bench: unknown helper %q\n", name)
	return 2
}

// helperBare is the protocol ceiling: go-smtp with a backend that takes
// every message and throws it away, no policy, no spool, no fsync.
func helperBare(args []string) int {
	fs := flag.NewFlagSet("helper-bare", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen `address`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench helper-bare:", err)
		return 1
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return discardSession{}, nil }))
	srv.Domain = "bare.bench.test"
	srv.MaxMessageBytes = 10 << 20
	srv.MaxRecipients = 1000
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = 5 * time.Minute
	srv.ErrorLog = log.New(io.Discard, "", 0)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; srv.Close() }()
	if err := srv.Serve(l); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "bench helper-bare:", err)
		return 1
	}
	return 0
}

type discardSession struct{}

func (discardSession) Reset()                               {}
func (discardSession) Logout() error                        { return nil }
func (discardSession) Mail(string, *smtp.MailOptions) error { return nil }
func (discardSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (discardSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// helperCrowd opens n connections from src to addr and keeps them open,
// silent, until its standard input is closed. It prints "ready n" once
// all are connected.
func helperCrowd(args []string) int {
	fs := flag.NewFlagSet("helper-crowd", flag.ContinueOnError)
	addr := fs.String("addr", "", "server `address`")
	n := fs.Int("n", 10000, "connections")
	src := fs.String("src", "127.0.0.2", "source `address`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, err := proc.RaiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "bench helper-crowd:", err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(*src)}, Timeout: 10 * time.Second}
	conns := make([]net.Conn, *n)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var err error
				// A full accept queue refuses or resets: try again.
				for try := 0; try < 50; try++ {
					if conns[i], err = d.Dial("tcp", *addr); err == nil {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range *n {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "bench helper-crowd:", firstErr)
		return 1
	}
	fmt.Printf("ready %d\n", *n)
	_, _ = io.Copy(io.Discard, os.Stdin)
	// Reset rather than close: a normal close would leave every port of
	// src in TIME_WAIT for a minute, and the next crowd could not bind.
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
	return 0
}
