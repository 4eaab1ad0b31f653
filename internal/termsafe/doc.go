// Package termsafe makes text from strangers safe to print on an
// administrator's terminal: sender addresses, header fields, DNS answers
// and file contents shown by the relay's admin commands and reports. A
// character a terminal could act on (an escape sequence that moves the
// cursor, retitles the window or rewrites the screen, a bell, a carriage
// return that overprints a line) or that hides or reorders what is shown
// (bidirectional overrides, zero-width characters) is replaced by '?', as
// Postfix's mailq does. Printable text, in any script, is kept.
package termsafe
