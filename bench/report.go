package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// WriteMarkdown renders the report. chart is the file name of the SVG
// chart, linked relative to the report.
func WriteMarkdown(w io.Writer, r *Results, chart string) error {
	var b strings.Builder
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	fmt.Fprintf(&b, "# Postern benchmarks\n\n")
	fmt.Fprintf(&b, "Run on %s UTC with `%s` (%s mode, %d repetitions, %s).\n",
		r.Date.UTC().Format("2006-01-02 15:04"), r.Command, mode, r.Reps, fmtDuration(r.Seconds))
	b.WriteString("Every figure is the median of the repetitions, with the spread (min–max and the interquartile range). " +
		"Every ratio is computed repetition by repetition from two figures measured back to back in the same run, " +
		"so the noise of a shared machine falls on both sides; its median and min–max are shown. " +
		"The numbers are only comparable within one run: compare ratios, not raw figures, between machines.\n\n")

	b.WriteString("## Machine\n\n| | |\n|---|---|\n")
	m := r.Machine
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "| %s | %s |\n", k, mdEscape(v))
		}
	}
	row("CPU", fmt.Sprintf("%s, %d cores", m.CPU, m.Cores))
	row("Memory", fmt.Sprintf("%.1f GiB", float64(m.MemoryMiB)/1024))
	row("OS", m.OS)
	row("Kernel", m.Kernel)
	row("Spool directory", m.SpoolDir)
	row("Spool file system", m.SpoolFS)
	row("Spool disk", m.SpoolDisk)
	row("Go", m.GoVersion)
	row("Postfix", m.Postfix)
	row("Load average at start", m.LoadBefore)
	b.WriteString("\n")

	b.WriteString("## Summary\n\n")
	if chart != "" {
		fmt.Fprintf(&b, "![Main ratios](%s)\n\n", chart)
	}
	b.WriteString("| Ratio | Median | Min–max | Target | |\n|---|--:|--:|--:|---|\n")
	for _, s := range r.Sections {
		if s.Error != "" {
			continue // listed as not measured below
		}
		for _, ra := range s.Ratios {
			if !ra.Chart && ra.Target == nil {
				continue
			}
			writeRatioRow(&b, ra)
		}
	}
	var failed []string
	for _, s := range r.Sections {
		if s.Error != "" {
			failed = append(failed, s.Title)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(&b, "\nNot measured (see below): %s.\n", strings.Join(failed, ", "))
	}
	b.WriteString("\n")

	for _, s := range r.Sections {
		fmt.Fprintf(&b, "## %d. %s\n\n", s.Number, s.Title)
		if s.Setup != "" {
			b.WriteString(strings.TrimSpace(s.Setup) + "\n\n")
		}
		if s.Error != "" {
			fmt.Fprintf(&b, "**Failed:** %s\n\n", mdEscape(s.Error))
		}
		if len(s.Figures) > 0 {
			b.WriteString("| Figure | Median | Min–max | IQR | n |\n|---|--:|--:|--:|--:|\n")
			for _, f := range s.Figures {
				sm := f.Summary
				fmt.Fprintf(&b, "| %s | %s | %s–%s | %s–%s | %d |\n", mdEscape(f.Name),
					strings.TrimSpace(fmtNum(sm.Median)+" "+f.Unit), fmtNum(sm.Min), fmtNum(sm.Max), fmtNum(sm.Q1), fmtNum(sm.Q3), sm.N)
			}
			b.WriteString("\n")
		}
		if len(s.Ratios) > 0 {
			b.WriteString("| Ratio | Median | Min–max | Target | |\n|---|--:|--:|--:|---|\n")
			for _, ra := range s.Ratios {
				writeRatioRow(&b, ra)
			}
			b.WriteString("\n")
		}
		for _, c := range s.Checks {
			fmt.Fprintf(&b, "- %s\n", c)
		}
		if len(s.Checks) > 0 {
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeRatioRow(b *strings.Builder, ra *Ratio) {
	target, verdict := "", ""
	if ra.Target != nil {
		target = ra.Target.String()
		verdict = "missed"
		if ra.Met != nil && *ra.Met {
			verdict = "met"
		} else if v, t := ra.Summary.Median, ra.Target.Value; !math.IsNaN(v) && t > 0 {
			// How far the median is from the target, as a share of it.
			short := 1 - v/t
			if ra.Target.Op == "<" {
				short = v/t - 1
			}
			verdict = fmt.Sprintf("missed by %.0f %%", 100*short)
		}
	}
	name := ra.Name
	if ra.LowerIsBetter {
		name += " (lower is better)"
	}
	fmt.Fprintf(b, "| %s | %s | %s–%s | %s | %s |\n", mdEscape(name), fmtRatio(ra.Summary.Median),
		fmtRatio(ra.Summary.Min), fmtRatio(ra.Summary.Max), target, verdict)
}

// fmtNum prints a figure with three or four significant digits and
// thousands separators.
func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "–"
	case a >= 1000:
		return thousands(strconv.FormatFloat(v, 'f', 0, 64))
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a == 0:
		return "0"
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// fmtRatio prints a ratio with two decimals (one from 100 on).
func fmtRatio(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func thousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtDuration(sec float64) string {
	if sec < 90 {
		return fmt.Sprintf("%.0f s", sec)
	}
	return fmt.Sprintf("%.1f min", sec/60)
}

// mdEscape keeps a table cell a cell.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
