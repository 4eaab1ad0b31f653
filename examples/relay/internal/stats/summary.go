package stats

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	// DefaultTop is how many entries a ranked list keeps.
	DefaultTop = 10
	// Other is the key that collects what a ranked list leaves out.
	Other = "(other)"
	// maxKeys bounds each counting map; keys beyond it count as Other,
	// so a flood of distinct senders cannot exhaust memory.
	maxKeys = 100_000
	// maxDays bounds a period (ten years of day files).
	maxDays = 3660
	// ctxEvery is how many events pass between context checks.
	ctxEvery = 4096
)

// SummaryOptions tunes Summarize. The zero value is the default.
type SummaryOptions struct {
	// Top is how many entries each ranked list (RejectedBy, Viruses,
	// TopSenders, TopSources) keeps before the rest is summed up under
	// Other; 0 means DefaultTop.
	Top int
}

// Count is one entry of a ranked list.
type Count struct {
	Key string
	N   int
}

// Day is one UTC day of a summary, for charts. Its fields match
// webui.Day's, so one converts to the other.
type Day struct {
	// Date is the day's midnight, UTC.
	Date                                                      time.Time
	Received, Delivered, Rejected, Quarantined, Viruses, Spam int
}

// Summary is what the journal says about a period [From, To).
type Summary struct {
	From, To time.Time

	// Messages received, quarantined and discarded.
	Received, Quarantined, Discarded int
	// Recipients delivered, deferred (attempts), bounced and expired.
	Delivered, Deferred, Bounced, Expired int
	// Rejected counts refused commands and transactions, RejectedTemp
	// those of them refused with a 4xx code.
	Rejected, RejectedTemp int
	// Bytes received (one copy per message) and delivered (per
	// recipient).
	ReceivedBytes, DeliveredBytes int64
	// VirusesFound counts virus names found, one per name per message.
	VirusesFound int
	// Spam and Ham count scored messages; SpamRatio is Spam/(Spam+Ham),
	// 0 when nothing was scored.
	Spam, Ham int
	SpamRatio float64

	// RejectedBy ranks rejections by RejectKey; Viruses ranks virus
	// names; TopSenders (the null sender is "<>") and TopSources (client
	// addresses) rank received messages. Each is sorted by N, then Key,
	// and ends with an Other entry for the rest, if any.
	RejectedBy, Viruses, TopSenders, TopSources []Count

	// Days has one entry per UTC day that the period touches, in order,
	// including days without events.
	Days []Day

	// Events is how many events fell in the period; BadLines how many
	// journal lines could not be read and were skipped.
	Events, BadLines int

	// Greylist are greylisting's figures per UTC day, which the journal
	// does not hold: the relay reads them from its counter store (so,
	// shared in Redis, they are every relay's) and sets them before the
	// report is written. nil leaves the section out.
	Greylist []GreyDay
}

// GreyDay is greylisting's figures for the triplets first seen on one UTC
// day.
type GreyDay struct {
	// Date is the day's midnight, UTC.
	Date time.Time
	// Greylisted new triplets were answered 451; Passed of them retried
	// in time. NeverRetried is the rest, once Final: the day's retry
	// window has closed.
	Greylisted, Passed, NeverRetried int64
	Final                            bool
}

// Summarize reads the journal in dir for the period [from, to): only the
// day files that overlap it, line by line, so a large journal needs
// little memory. Bad lines are counted in BadLines and skipped; events
// of unknown kinds are ignored; a missing directory or day file counts as
// no events. It fails only on a bad period or option, a file that cannot
// be read, or ctx.
func Summarize(ctx context.Context, dir string, from, to time.Time, opts SummaryOptions) (*Summary, error) {
	top := opts.Top
	switch {
	case top < 0:
		return nil, fmt.Errorf("%w: Top %d is negative", ErrConfig, top)
	case top == 0:
		top = DefaultTop
	}
	if !to.After(from) {
		return nil, fmt.Errorf("%w: %s is not after %s", ErrPeriod, to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	first := dayStart(from)
	n := int(dayStart(to.Add(-time.Nanosecond)).Sub(first)/(24*time.Hour)) + 1
	if n > maxDays {
		return nil, fmt.Errorf("%w: %d days is more than %d", ErrPeriod, n, maxDays)
	}

	a := &accumulator{
		ctx: ctx, from: from, to: to, first: first,
		s:       &Summary{From: from, To: to, Days: make([]Day, n)},
		reasons: newCounter(), viruses: newCounter(),
		senders: newCounter(), sources: newCounter(),
	}
	for i := range a.s.Days {
		a.s.Days[i].Date = first.AddDate(0, 0, i)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, d := range a.s.Days {
		if err := a.readFile(filepath.Join(dir, d.Date.Format(dayLayout)+fileExt)); err != nil {
			return nil, err
		}
	}

	s := a.s
	if scored := s.Spam + s.Ham; scored > 0 {
		s.SpamRatio = float64(s.Spam) / float64(scored)
	}
	s.RejectedBy = a.reasons.top(top)
	s.Viruses = a.viruses.top(top)
	s.TopSenders = a.senders.top(top)
	s.TopSources = a.sources.top(top)
	return s, nil
}

// dayStart is the UTC midnight that begins t's UTC day.
func dayStart(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

type accumulator struct {
	ctx                                context.Context
	from, to, first                    time.Time
	s                                  *Summary
	reasons, viruses, senders, sources *counter
	seen                               int
}

func (a *accumulator) readFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	defer f.Close()
	bad, err := readEvents(f, a.add)
	a.s.BadLines += bad
	if err != nil {
		if a.ctx.Err() != nil {
			return a.ctx.Err()
		}
		return fmt.Errorf("stats: reading %s: %w", path, err)
	}
	return nil
}

func (a *accumulator) add(e Event) error {
	if a.seen++; a.seen%ctxEvery == 0 {
		if err := a.ctx.Err(); err != nil {
			return err
		}
	}
	if e.Time.Before(a.from) || !e.Time.Before(a.to) {
		return nil
	}
	s := a.s
	day := &s.Days[int(e.Time.Sub(a.first)/(24*time.Hour))]
	s.Events++
	switch e.Kind {
	case Received:
		s.Received++
		day.Received++
		s.ReceivedBytes += max(e.Size, 0)
		a.senders.add(senderKey(e.Sender))
		a.sources.add(sourceKey(e))
	case Delivered:
		s.Delivered++
		day.Delivered++
		s.DeliveredBytes += max(e.Size, 0)
	case Deferred:
		s.Deferred++
	case Bounced:
		s.Bounced++
	case Expired:
		s.Expired++
	case Quarantined:
		s.Quarantined++
		day.Quarantined++
	case Discarded:
		s.Discarded++
	case Rejected:
		s.Rejected++
		day.Rejected++
		if e.Code >= 400 && e.Code < 500 {
			s.RejectedTemp++
		}
		a.reasons.add(RejectKey(e))
	case Virus:
		s.VirusesFound++
		day.Viruses++
		name := e.Virus
		if name == "" {
			name = "(unnamed)"
		}
		a.viruses.add(name)
	case Spam:
		s.Spam++
		day.Spam++
	case Ham:
		s.Ham++
	default:
		s.Events-- // a kind from a newer relay: not ours to count
	}
	return nil
}

func senderKey(s string) string {
	if s == "" || s == "<>" {
		return "<>"
	}
	return strings.ToLower(s)
}

func sourceKey(e Event) string {
	if !e.ClientIP.IsValid() {
		return "(unknown)"
	}
	return e.ClientIP.Unmap().String()
}

// counter counts keys, at most maxKeys of them; the rest go to other.
type counter struct {
	m     map[string]int
	other int
}

func newCounter() *counter { return &counter{m: make(map[string]int)} }

func (c *counter) add(k string) {
	if _, ok := c.m[k]; ok || len(c.m) < maxKeys {
		c.m[k]++
		return
	}
	c.other++
}

// top returns the n largest counts, then Other with the rest if any.
func (c *counter) top(n int) []Count {
	if len(c.m) == 0 && c.other == 0 {
		return nil
	}
	rest := c.other
	all := make([]Count, 0, len(c.m))
	for k, v := range c.m {
		if k == Other {
			rest += v // a sender or name that spells "(other)"
			continue
		}
		all = append(all, Count{k, v})
	}
	slices.SortFunc(all, func(a, b Count) int {
		if a.N != b.N {
			return cmp.Compare(b.N, a.N)
		}
		return strings.Compare(a.Key, b.Key)
	})
	if len(all) > n {
		for _, x := range all[n:] {
			rest += x.N
		}
		all = all[:n:n]
	}
	if rest > 0 {
		all = append(all, Count{Other, rest})
	}
	return all
}
