package termsafe_test

import (
	"fmt"

	"github.com/postern/postern/internal/termsafe"
)

func ExampleString() {
	// A sender address that would retitle the terminal and clear it.
	fmt.Println(termsafe.String("boss\x1b]0;root\x07@example.test\x1b[2J"))
	// Output: boss?]0;root?@example.test?[2J
}
