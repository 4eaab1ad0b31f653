package main

import (
	"fmt"
	"strings"
)

// Each figure is summarized by its median and spread; a repetition that
// produced nothing (NaN) is left out.
func ExampleSummarize() {
	s := Summarize([]float64{410, 395, 402, 388, 420})
	fmt.Printf("median %.0f, min–max %.0f–%.0f, IQR %.0f–%.0f, n=%d\n", s.Median, s.Min, s.Max, s.Q1, s.Q3, s.N)
	// Output: median 402, min–max 388–420, IQR 395–410, n=5
}

// Ratios are taken repetition by repetition, then summarized.
func ExamplePairedRatios() {
	postern := []float64{900, 640, 820}
	postfix := []float64{400, 310, 380}
	r, err := PairedRatios(postern, postfix)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%.2f\n", Summarize(r).Median)
	// Output: 2.16
}

// A section declares its figures and ratios, records one value per
// repetition, and renders as Markdown.
func ExampleWriteMarkdown() {
	s := newSection("durability", "Durability", "")
	s.Number = 2
	s.figure("enqueue", "queue.Enqueue, 32 clients", "msgs/s")
	s.figure("fsync", "one fsync per message, 32 clients", "msgs/s")
	s.ratio("r", "Enqueue/fsync", "enqueue", "fsync").withTarget(">", 5)
	for _, v := range [][2]float64{{9000, 1500}, {8000, 1600}, {9500, 1400}} {
		s.add("enqueue", v[0])
		s.add("fsync", v[1])
	}
	if err := s.finish(); err != nil {
		fmt.Println(err)
		return
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, &Results{Sections: []*Section{s}}, ""); err != nil {
		fmt.Println(err)
		return
	}
	// Print the section only.
	out := b.String()
	fmt.Print(out[strings.Index(out, "## 2."):])
	// Output:
	// ## 2. Durability
	//
	// | Figure | Median | Min–max | IQR | n |
	// |---|--:|--:|--:|--:|
	// | queue.Enqueue, 32 clients | 9,000 msgs/s | 8,000–9,500 | 8,500–9,250 | 3 |
	// | one fsync per message, 32 clients | 1,500 msgs/s | 1,400–1,600 | 1,450–1,550 | 3 |
	//
	// | Ratio | Median | Min–max | Target | |
	// |---|--:|--:|--:|---|
	// | Enqueue/fsync | 6.00 | 5.00–6.79 | > 5 | met |
}
