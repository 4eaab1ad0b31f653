package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Results is everything one run measured; it is written as results.json
// and rendered as REPORT.md and chart.svg.
type Results struct {
	Date     time.Time  `json:"date"`
	Command  string     `json:"command"`
	Reps     int        `json:"repetitions"`
	Quick    bool       `json:"quick"`
	Seconds  float64    `json:"seconds"`
	Machine  Machine    `json:"machine"`
	Sections []*Section `json:"sections"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	MemoryMiB  int64  `json:"memory_mib"`
	OS         string `json:"os"`
	Kernel     string `json:"kernel"`
	SpoolDir   string `json:"spool_dir"`
	SpoolFS    string `json:"spool_fs"`     // "ext4 on /dev/vda (rw,relatime)"
	SpoolDisk  string `json:"spool_disk"`   // "vda: virtio, non-rotational"
	GoVersion  string `json:"go_version"`   // the toolchain that built the relay
	Postfix    string `json:"postfix"`      // mail_version
	LoadBefore string `json:"load_average"` // /proc/loadavg at the start
}

// Section is one benchmark.
type Section struct {
	Number  int       `json:"number"` // as in issue 8
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Setup   string    `json:"setup"`
	Figures []*Figure `json:"figures"`
	Ratios  []*Ratio  `json:"ratios"`
	Checks  []string  `json:"checks,omitempty"`
	Error   string    `json:"error,omitempty"`
	Seconds float64   `json:"seconds"`
}

// Figure is one measured quantity, one sample per repetition.
type Figure struct {
	Key     string  `json:"key"`
	Name    string  `json:"name"`
	Unit    string  `json:"unit"`
	Samples Nums    `json:"samples"`
	Summary Summary `json:"summary"`
}

// Ratio is Num/Den per repetition. With a Target the median is held
// against it.
type Ratio struct {
	Key           string  `json:"key"`
	Name          string  `json:"name"`
	Num           string  `json:"num"`
	Den           string  `json:"den"`
	Samples       Nums    `json:"samples"`
	Summary       Summary `json:"summary"`
	Target        *Target `json:"target,omitempty"`
	Met           *bool   `json:"met,omitempty"`
	Chart         bool    `json:"chart"`
	LowerIsBetter bool    `json:"lower_is_better,omitempty"`
}

// Target is what a ratio must beat: "> 2" or "< 1.5".
type Target struct {
	Op    string  `json:"op"`
	Value float64 `json:"value"`
}

func (t Target) String() string { return t.Op + " " + strconv.FormatFloat(t.Value, 'g', -1, 64) }

func (t Target) met(v float64) bool {
	if math.IsNaN(v) {
		return false
	}
	if t.Op == "<" {
		return v < t.Value
	}
	return v > t.Value
}

// Nums are samples; NaN (no value) is written as JSON null.
type Nums []float64

func (n Nums) MarshalJSON() ([]byte, error) {
	out := make([]*float64, len(n))
	for i, v := range n {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			out[i] = &n[i]
		}
	}
	return json.Marshal(out)
}

func (n *Nums) UnmarshalJSON(b []byte) error {
	var in []*float64
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*n = make(Nums, len(in))
	for i, v := range in {
		(*n)[i] = math.NaN()
		if v != nil {
			(*n)[i] = *v
		}
	}
	return nil
}

// MarshalJSON writes NaN fields (no samples) as null.
func (s Summary) MarshalJSON() ([]byte, error) {
	f := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	return json.Marshal(struct {
		N      int      `json:"n"`
		Median *float64 `json:"median"`
		Min    *float64 `json:"min"`
		Max    *float64 `json:"max"`
		Q1     *float64 `json:"q1"`
		Q3     *float64 `json:"q3"`
	}{s.N, f(s.Median), f(s.Min), f(s.Max), f(s.Q1), f(s.Q3)})
}

// newSection starts a section.
func newSection(id, title, setup string) *Section {
	return &Section{ID: id, Title: title, Setup: setup}
}

// figure declares a figure (once) and returns it.
func (s *Section) figure(key, name, unit string) *Figure {
	for _, f := range s.Figures {
		if f.Key == key {
			return f
		}
	}
	f := &Figure{Key: key, Name: name, Unit: unit}
	s.Figures = append(s.Figures, f)
	return f
}

// add records one repetition's value of a declared figure.
func (s *Section) add(key string, v float64) {
	for _, f := range s.Figures {
		if f.Key == key {
			f.Samples = append(f.Samples, v)
			return
		}
	}
	panic("bench: figure " + key + " not declared") // a bug in the harness, not bad input
}

// ratio declares Num/Den.
func (s *Section) ratio(key, name, num, den string) *Ratio {
	r := &Ratio{Key: key, Name: name, Num: num, Den: den}
	s.Ratios = append(s.Ratios, r)
	return r
}

func (s *Section) lookup(key string) *Figure {
	for _, f := range s.Figures {
		if f.Key == key {
			return f
		}
	}
	return nil
}

// finish computes the summaries and the ratios. Figures with different
// numbers of samples (a section that failed part way) give no ratio
// rather than a wrong one, and an error.
func (s *Section) finish() error {
	var errs []error
	for _, f := range s.Figures {
		f.Summary = Summarize(f.Samples)
	}
	for _, r := range s.Ratios {
		num, den := s.lookup(r.Num), s.lookup(r.Den)
		if num == nil || den == nil {
			return fmt.Errorf("bench: ratio %s names an unknown figure", r.Key)
		}
		samples, err := PairedRatios(num.Samples, den.Samples)
		if err != nil {
			errs = append(errs, fmt.Errorf("ratio %s: %w", r.Key, err))
			samples = make(Nums, max(len(num.Samples), len(den.Samples)))
			for i := range samples {
				samples[i] = math.NaN()
			}
		}
		r.Samples = samples
		r.Summary = Summarize(samples)
		if r.Target != nil {
			met := r.Target.met(r.Summary.Median)
			r.Met = &met
		}
	}
	return errors.Join(errs...)
}

// withTarget sets the ratio's target; chart puts it in the chart.
func (r *Ratio) withTarget(op string, v float64) *Ratio {
	r.Target = &Target{Op: op, Value: v}
	return r
}

func (r *Ratio) inChart() *Ratio { r.Chart = true; return r }

func (r *Ratio) lowerIsBetter() *Ratio { r.LowerIsBetter = true; return r }
