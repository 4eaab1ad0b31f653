package main

import (
	"fmt"
	"math"
	"slices"
)

// Summary describes the repetitions of one figure: the median and the
// spread around it (min–max and the interquartile range).
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Q1     float64 `json:"q1"`
	Q3     float64 `json:"q3"`
}

// Summarize returns the summary of samples; NaN samples (a repetition
// that produced no figure) are left out.
func Summarize(samples []float64) Summary {
	s := make([]float64, 0, len(samples))
	for _, v := range samples {
		if !math.IsNaN(v) {
			s = append(s, v)
		}
	}
	if len(s) == 0 {
		nan := math.NaN()
		return Summary{Median: nan, Min: nan, Max: nan, Q1: nan, Q3: nan}
	}
	slices.Sort(s)
	return Summary{N: len(s), Median: quantileSorted(s, 0.5), Min: s[0], Max: s[len(s)-1],
		Q1: quantileSorted(s, 0.25), Q3: quantileSorted(s, 0.75)}
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of samples, interpolating
// linearly between order statistics (Hyndman and Fan's type 7, the
// default of R and NumPy). It does not modify samples.
func Quantile(samples []float64, q float64) float64 {
	if len(samples) == 0 {
		return math.NaN()
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return quantileSorted(s, q)
}

func quantileSorted(s []float64, q float64) float64 {
	h := q * float64(len(s)-1)
	lo := int(math.Floor(h))
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[lo] + (h-float64(lo))*(s[lo+1]-s[lo])
}

// PairedRatios divides num by den repetition by repetition: both sides of
// a ratio are measured back to back, so the machine's noise of the moment
// falls on both. A missing or zero denominator gives NaN.
func PairedRatios(num, den []float64) ([]float64, error) {
	if len(num) != len(den) {
		return nil, fmt.Errorf("bench: ratio of %d samples to %d samples", len(num), len(den))
	}
	out := make([]float64, len(num))
	for i := range num {
		if den[i] == 0 || math.IsNaN(den[i]) || math.IsNaN(num[i]) {
			out[i] = math.NaN()
			continue
		}
		out[i] = num[i] / den[i]
	}
	return out, nil
}
