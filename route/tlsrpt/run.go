package tlsrpt

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Run sends each day's reports SendAfter past midnight UTC, until ctx
// ends. At start it sends those of earlier days not yet sent (a relay
// that was down at midnight), and it removes sent journals older than
// Retain.
func (r *Reporter) Run(ctx context.Context) error {
	for {
		r.catchUp(ctx)
		now := r.cfg.Now().UTC()
		next := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).Add(24*time.Hour + r.cfg.SendAfter)
		if d := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).Add(r.cfg.SendAfter); now.Before(d) {
			next = d
		}
		t := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// catchUp sends the journals of days before today and prunes old ones.
func (r *Reporter) catchUp(ctx context.Context) {
	today := dayName(r.cfg.Now())
	entries, err := os.ReadDir(r.cfg.Dir)
	if err != nil {
		r.log.Warn("TLS-RPT: journal directory unreadable", "error", err)
		return
	}
	for _, e := range entries {
		name := e.Name()
		if day, ok := strings.CutSuffix(name, ".jsonl"); ok && day < today {
			t, err := time.Parse("2006-01-02", day)
			if err != nil {
				continue
			}
			if err := r.Send(ctx, t); err != nil {
				r.log.Warn("TLS-RPT: reports not sent", "day", day, "error", err)
			}
			continue
		}
		if day, ok := strings.CutSuffix(name, ".jsonl.sent"); ok {
			if t, err := time.Parse("2006-01-02", day); err == nil && r.cfg.Now().Sub(t) > r.cfg.Retain {
				os.Remove(filepath.Join(r.cfg.Dir, name))
			}
		}
	}
}
