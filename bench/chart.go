package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// WriteChart draws the chart ratios of r as an SVG bar chart: one bar per
// ratio from 1 (parity with the reference) to its median, on a log scale
// so that 0.5 and 2 are equally far from parity; whiskers span min–max,
// a dashed mark shows the target.
func WriteChart(w io.Writer, r *Results) error {
	var rows []*Ratio
	for _, s := range r.Sections {
		if s.Error != "" {
			continue
		}
		for _, ra := range s.Ratios {
			if ra.Chart && !math.IsNaN(ra.Summary.Median) && ra.Summary.Median > 0 {
				rows = append(rows, ra)
			}
		}
	}
	const (
		width   = 980
		labelW  = 470
		plotX0  = labelW + 10
		plotX1  = width - 60
		top     = 58
		rowH    = 30
		bottomH = 64
	)
	height := top + rowH*max(len(rows), 1) + bottomH
	lo, hi := 0.0, 0.0 // decades
	for _, ra := range rows {
		for _, v := range []float64{ra.Summary.Min, ra.Summary.Max, ra.Summary.Median} {
			if v > 0 && !math.IsNaN(v) {
				lo = math.Min(lo, math.Floor(math.Log10(v)))
				hi = math.Max(hi, math.Ceil(math.Log10(v)))
			}
		}
		if ra.Target != nil && ra.Target.Value > 0 {
			lo = math.Min(lo, math.Floor(math.Log10(ra.Target.Value)))
			hi = math.Max(hi, math.Ceil(math.Log10(ra.Target.Value)))
		}
	}
	lo, hi = math.Max(lo, -3), math.Min(hi, 4)
	if hi-lo < 2 {
		if hi < 1 {
			hi = 1
		}
		if hi-lo < 2 {
			lo = hi - 2
		}
	}
	x := func(v float64) float64 {
		v = math.Min(math.Max(v, math.Pow(10, lo)), math.Pow(10, hi))
		return plotX0 + (math.Log10(v)-lo)/(hi-lo)*(plotX1-plotX0)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">Postern against its references: ratios, median of %d repetitions</text>`+"\n", 10, r.Reps)
	fmt.Fprintf(&b, `<text x="%d" y="44" fill="#555">%s · %s · bars from 1 (parity) to the median, whiskers min–max, log scale</text>`+"\n",
		10, xmlEscape(r.Date.UTC().Format("2006-01-02")), xmlEscape(r.Machine.CPU))
	plotBottom := top + rowH*len(rows)
	// Decade grid, with 2 and 5 in between.
	for d := lo; d <= hi; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > hi+1e-9 {
				continue
			}
			gx := x(v)
			stroke, sw := "#e4e4e4", 1.0
			if m == 1 {
				stroke = "#bbbbbb"
			}
			if v == 1 {
				stroke, sw = "#333333", 1.5
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="%.1f"/>`+"\n", gx, top-6, gx, plotBottom, stroke, sw)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555" font-size="11">%s</text>`+"\n", gx, plotBottom+16, tickLabel(v))
		}
	}
	for i, ra := range rows {
		y := float64(top + i*rowH)
		cy := y + rowH/2
		label := ra.Name
		if ra.LowerIsBetter {
			label += " ↓"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", labelW, cy, xmlEscape(label))
		color := "#4a78b0"
		if ra.Met != nil {
			color = "#3a9a4a"
			if !*ra.Met {
				color = "#c0392b"
			}
		}
		x1, xm := x(1), x(ra.Summary.Median)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s" fill-opacity="0.85"/>`+"\n",
			math.Min(x1, xm), y+7, math.Abs(xm-x1), rowH-14, color)
		if !math.IsNaN(ra.Summary.Min) && !math.IsNaN(ra.Summary.Max) {
			xa, xb := x(ra.Summary.Min), x(ra.Summary.Max)
			fmt.Fprintf(&b, `<path d="M%.1f %.1fH%.1fM%.1f %.1fV%.1fM%.1f %.1fV%.1f" stroke="#222" stroke-width="1.2" fill="none"/>`+"\n",
				xa, cy, xb, xa, cy-5, cy+5, xb, cy-5, cy+5)
		}
		if ra.Target != nil && ra.Target.Value > 0 {
			tx := x(ra.Target.Value)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e67e22" stroke-width="2.5" stroke-dasharray="3 2"/>`+"\n",
				tx, y+2, tx, y+rowH-2)
		}
		lx := math.Max(math.Max(xm, x1), x(ra.Summary.Max)) + 6
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" dominant-baseline="middle" font-weight="bold">%s</text>`+"\n", lx, cy, fmtRatio(ra.Summary.Median))
	}
	ly := plotBottom + 40
	fmt.Fprintf(&b, `<rect x="10" y="%d" width="12" height="12" fill="#3a9a4a"/><text x="28" y="%d">target met</text>`+"\n", ly-10, ly)
	fmt.Fprintf(&b, `<rect x="120" y="%d" width="12" height="12" fill="#c0392b"/><text x="138" y="%d">target missed</text>`+"\n", ly-10, ly)
	fmt.Fprintf(&b, `<rect x="250" y="%d" width="12" height="12" fill="#4a78b0"/><text x="268" y="%d">no target</text>`+"\n", ly-10, ly)
	fmt.Fprintf(&b, `<line x1="360" y1="%d" x2="360" y2="%d" stroke="#e67e22" stroke-width="2.5" stroke-dasharray="3 2"/><text x="368" y="%d">target</text>`+"\n", ly-11, ly+2, ly)
	fmt.Fprintf(&b, `<text x="430" y="%d">↓ lower is better; otherwise higher is better</text>`+"\n", ly)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func tickLabel(v float64) string {
	if v >= 1 {
		return fmt.Sprintf("%g", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
