// Package archtest enforces the dependency rules of docs/ARCHITECTURE.md:
// they are what keeps each Postern component importable on its own. Its
// tests hold a table of every package of the library module and the
// third-party modules its whole dependency graph may pull (go list
// -deps), and the import rules between Postern's own packages. It has
// no API.
package archtest
