// Package scantest starts real scanner daemons (clamd, spamd, rspamd) on
// loopback for tests, each with a private configuration that works
// offline, and provides the standard test strings they detect.
//
// A daemon that is not installed skips the test, or fails it when the
// environment has CI=true (where the daemons must be installed:
// apt-get install clamav-daemon spamd rspamd). Daemons stop when the
// test ends.
//
// It is a public package (like net/http/httptest) so that tests of other
// packages, the relay's integration tests among them, can use it.
package scantest
