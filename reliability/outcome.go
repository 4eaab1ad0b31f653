package main

import (
	"fmt"
	"time"
)

// Status of a scenario or a case.
const (
	StatusPass = "pass"
	StatusFail = "fail"
	StatusSkip = "skip"
)

// Outcome is the verdict part of every result: failures say what went
// wrong, Skipped why the scenario could not run.
type Outcome struct {
	Status   string   `json:"status"`
	Failures []string `json:"failures,omitempty"`
	Skipped  string   `json:"skipped,omitempty"`
	Notes    []string `json:"notes,omitempty"`
}

func (o *Outcome) fail(format string, args ...any) {
	o.Failures = append(o.Failures, fmt.Sprintf(format, args...))
}

// require records a failure unless cond holds, and returns cond.
func (o *Outcome) require(cond bool, format string, args ...any) bool {
	if !cond {
		o.fail(format, args...)
	}
	return cond
}

func (o *Outcome) note(format string, args ...any) {
	o.Notes = append(o.Notes, fmt.Sprintf(format, args...))
}

// skip records why a scenario or case cannot run here (a missing peer,
// no root for a mount); under CI=true that is a failure.
func (o *Outcome) skip(ci bool, err error) {
	if ci {
		o.fail("%v, and CI=true requires it", err)
		return
	}
	o.Skipped = err.Error()
}

// settle sets Status from what was recorded.
func (o *Outcome) settle() {
	switch {
	case len(o.Failures) > 0:
		o.Status = StatusFail
	case o.Skipped != "":
		o.Status = StatusSkip
	default:
		o.Status = StatusPass
	}
}

func setDefault[T int | int64 | uint64 | float64 | time.Duration](p *T, v T) {
	if *p == 0 {
		*p = v
	}
}
