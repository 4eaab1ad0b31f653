package scanner_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/postern/postern/scan/scanner"
)

// A scanner of one's own: here one that calls anything with "EICAR" in
// it a virus.
func ExampleFunc() {
	s := scanner.Func("eicar", func(_ context.Context, msg io.Reader, _ *scanner.Envelope) (scanner.Result, error) {
		b, err := io.ReadAll(msg)
		if err != nil {
			return scanner.Result{}, scanner.Failed("eicar", err)
		}
		if strings.Contains(string(b), "EICAR") {
			return scanner.Result{Scanner: "eicar", Infected: true, Viruses: []string{"Eicar-Test"}}, nil
		}
		return scanner.Result{Scanner: "eicar"}, nil
	})
	res, _ := s.Scan(context.Background(), strings.NewReader("Subject: test\r\n\r\nEICAR\r\n"), nil)
	fmt.Println(res)
	// Output:
	// eicar: infected: Eicar-Test
}

// An adapter reports each server's failure once: Failed puts its name in
// front, ServerError the server's address.
func ExampleFailed() {
	errBusy := errors.New("server error")
	err := scanner.Failed("clamav",
		scanner.ServerError("/run/clamav/clamd.ctl", fmt.Errorf("%w: %q", errBusy, "Can't allocate memory")),
		scanner.ServerError("192.0.2.25:3310", context.DeadlineExceeded))
	fmt.Println(err)
	fmt.Println(errors.Is(err, scanner.ErrScanner), errors.Is(err, errBusy))
	// Output:
	// clamav: /run/clamav/clamd.ctl: server error: "Can't allocate memory"; 192.0.2.25:3310: context deadline exceeded
	// true true
}
