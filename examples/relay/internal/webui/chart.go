package webui

import (
	"context"
	"math"
	"strconv"
	"time"
)

// chart is the admin page's line chart of the relay's totals per day,
// drawn as SVG by the "chart" template: no script, no image file.
type chart struct {
	Width, Height            int
	Left, Right, Top, Bottom string // the plot area
	PlotW, PlotH             string
	XLabelY, LegendY         string
	YTicks                   []tick
	XLabels                  []tick
	Series                   []series
	Rows                     []dayRow
	Totals                   [6]int
	Names                    [6]string
}

type tick struct{ Pos, Label string }

type series struct {
	Name, Color string
	Points      string
	Dots        []dot
	Total       int
	LegendX     string
	SwatchX     string
}

type dot struct {
	X, Y  string
	Date  string
	Value int
}

type dayRow struct {
	Date   string
	Values [6]int
}

// The series, in the order of Day's fields, with colours that stay apart
// for the common kinds of colour blindness (Tableau 10).
var seriesNames = [6]string{"received", "delivered", "rejected", "quarantined", "viruses", "spam"}
var seriesColors = [6]string{"#4e79a7", "#59a14f", "#e15759", "#f28e2b", "#b07aa1", "#9c755f"}

func (d Day) values() [6]int {
	return [6]int{d.Received, d.Delivered, d.Rejected, d.Quarantined, d.Viruses, d.Spam}
}

// chart asks Days for the last ChartDays days (today included, in
// Location) and builds the chart; without statistics it returns a note
// to show instead.
func (s *Server) chart(ctx context.Context) (*chart, string) {
	if s.cfg.Days == nil {
		return nil, "No statistics are available: the relay keeps none."
	}
	n := s.cfg.ChartDays
	now := s.cfg.Clock().In(s.cfg.Location)
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, s.cfg.Location)
	from := today.AddDate(0, 0, -(n - 1))
	days, err := s.cfg.Days(ctx, from, today.AddDate(0, 0, 1))
	if err != nil {
		s.log.Error("quarantine page: statistics could not be read", "error", err)
		return nil, "The statistics could not be read; the log says why."
	}
	return buildChart(days, from, n, s.cfg.Location), ""
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// buildChart lays out n days from the first: days missing from the
// statistics count as zero, days outside the range are ignored.
func buildChart(days []Day, first time.Time, n int, loc *time.Location) *chart {
	const (
		width, height    = 960, 330
		left, right      = 56.0, 920.0 // room for the last date label
		top, bottom      = 16.0, 250.0
		xLabelY, legendY = 270.0, 306.0
		legendX, charW   = 56.0, 7.0 // about the width of a 12px character
	)
	byDate := map[string]int{}
	c := &chart{Width: width, Height: height, Left: f1(left), Right: f1(right), Top: f1(top), Bottom: f1(bottom),
		PlotW: f1(right - left), PlotH: f1(bottom - top),
		XLabelY: f1(xLabelY), LegendY: f1(legendY), Names: seriesNames}
	for i := range n {
		d := first.AddDate(0, 0, i)
		key := d.Format("2006-01-02")
		byDate[key] = i
		c.Rows = append(c.Rows, dayRow{Date: key})
	}
	for _, d := range days {
		i, ok := byDate[d.Date.In(loc).Format("2006-01-02")]
		if !ok {
			continue
		}
		for k, v := range d.values() {
			c.Rows[i].Values[k] += max(v, 0)
		}
	}
	top1 := 0
	for _, r := range c.Rows {
		for k, v := range r.Values {
			c.Totals[k] += v
			top1 = max(top1, v)
		}
	}
	step := niceStep(float64(top1) / 4)
	ymax := step * max(1, int(math.Ceil(float64(top1)/float64(step))))
	y := func(v int) float64 { return bottom - (bottom-top)*float64(v)/float64(ymax) }
	x := func(i int) float64 {
		if n == 1 {
			return (left + right) / 2
		}
		return left + (right-left)*float64(i)/float64(n-1)
	}
	for v := 0; v <= ymax; v += step {
		c.YTicks = append(c.YTicks, tick{Pos: f1(y(v)), Label: strconv.Itoa(v)})
	}
	every := max(1, (n+13)/14) // at most about 14 date labels
	for i := range n {
		if i%every == 0 {
			c.XLabels = append(c.XLabels, tick{Pos: f1(x(i)), Label: first.AddDate(0, 0, i).Format("Jan 2")})
		}
	}
	lx := legendX
	for k := range seriesNames {
		s := series{Name: seriesNames[k], Color: seriesColors[k], Total: c.Totals[k],
			SwatchX: f1(lx), LegendX: f1(lx + 14)}
		lx += 14 + charW*float64(len(seriesNames[k])+len(strconv.Itoa(c.Totals[k]))+3) + 16
		var pts []byte
		for i, r := range c.Rows {
			px, py := f1(x(i)), f1(y(r.Values[k]))
			if i > 0 {
				pts = append(pts, ' ')
			}
			pts = append(pts, px...)
			pts = append(pts, ',')
			pts = append(pts, py...)
			s.Dots = append(s.Dots, dot{X: px, Y: py, Date: r.Date, Value: r.Values[k]})
		}
		s.Points = string(pts)
		c.Series = append(c.Series, s)
	}
	return c
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten
// (at least 1: the counts are whole).
func niceStep(raw float64) int {
	if raw <= 1 {
		return 1
	}
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	var f float64
	switch r := raw / pow; {
	case r <= 1:
		f = 1
	case r <= 2:
		f = 2
	case r <= 5:
		f = 5
	default:
		f = 10
	}
	return int(math.Ceil(f * pow))
}
