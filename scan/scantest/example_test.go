package scantest_test

import (
	"fmt"
	"strings"

	"github.com/postern/postern/scan/scantest"
)

// The test strings every scanner knows. In a test, start a daemon with
// scantest.Clamd(t), scantest.Spamd(t) or scantest.Rspamd(t) and point an
// adapter at its Addr (or Socket); it is killed when the test ends.
func Example() {
	fmt.Println(len(scantest.EICAR()), strings.HasPrefix(string(scantest.EICAR()), "X5O!P%@AP"))
	fmt.Println(strings.Contains(scantest.GTUBE(), "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL"))
	fmt.Println(scantest.EICARSignature + ".UNOFFICIAL")
	// Output:
	// 68 true
	// true
	// Postern.Test.EICAR.UNOFFICIAL
}
