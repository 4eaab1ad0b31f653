// Package proc holds the few process controls the bench and reliability
// harnesses share: children that die with the harness, and a file
// descriptor limit raised for crowds of connections. Linux only; elsewhere
// the functions report that they cannot.
package proc
