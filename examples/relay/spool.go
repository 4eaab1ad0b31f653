package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/postern/postern"
)

// spool is the relay's durable hand-off until the queue package takes over:
// one file per message, written to tmp/, synced, renamed into new/ (or
// hold/ for quarantined mail) and the directory synced, so a message
// answered 250 survives a crash. A file is one JSON line of envelope, then
// the message as rendered. Errors keep their cause, so smtpserver answers a
// full disk (ENOSPC, EDQUOT) with 452 4.3.1. Files are plain and self-contained: moving a
// relay is copying the directory.
type spool struct {
	dir string
}

// envelope is the first line of a spool file.
type envelope struct {
	ID         string         `json:"id"`
	From       string         `json:"from"`
	Rcpts      []envelopeRcpt `json:"rcpts"`
	Ret        string         `json:"ret,omitempty"`
	EnvID      string         `json:"envid,omitempty"`
	SMTPUTF8   bool           `json:"smtputf8,omitempty"`
	Body       string         `json:"body,omitempty"`
	Quarantine string         `json:"quarantine,omitempty"`
	ClientIP   string         `json:"client_ip"`
	HELO       string         `json:"helo"`
	AuthUser   string         `json:"auth_user,omitempty"`
	ConnID     string         `json:"conn_id"`
}

type envelopeRcpt struct {
	Addr      string   `json:"addr"`
	Original  string   `json:"original"`
	Notify    []string `json:"notify,omitempty"`
	ORcptType string   `json:"orcpt_type,omitempty"`
	ORcpt     string   `json:"orcpt,omitempty"`
}

func openSpool(dir string) (*spool, error) {
	for _, d := range []string{"tmp", "new", "hold"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	// Leftovers in tmp/ were never acknowledged: the client was not told 250.
	if left, err := filepath.Glob(filepath.Join(dir, "tmp", "*")); err == nil {
		for _, f := range left {
			os.Remove(f)
		}
	}
	return &spool{dir: dir}, nil
}

// Handoff implements smtpserver.Handoff.
func (s *spool) Handoff(_ context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (string, error) {
	id := t.ID
	env := envelope{ID: id, From: t.From, Ret: t.Mail.Ret, EnvID: t.Mail.EnvID, SMTPUTF8: t.Mail.SMTPUTF8,
		Body: t.Mail.Body, Quarantine: t.Quarantine, ClientIP: c.RemoteAddr().String(), HELO: c.HELO,
		AuthUser: c.AuthUser, ConnID: c.ID}
	for _, r := range t.Rcpts {
		env.Rcpts = append(env.Rcpts, envelopeRcpt{Addr: r.Addr, Original: r.Original, Notify: r.Notify,
			ORcptType: r.ORcptType, ORcpt: r.ORcpt})
	}
	sub := "new"
	if t.Quarantine != "" {
		sub = "hold"
	}
	tmp := filepath.Join(s.dir, "tmp", id)
	if err := writeSynced(tmp, env, m); err != nil {
		os.Remove(tmp)
		return "", err
	}
	final := filepath.Join(s.dir, sub, id)
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("spool: %w", err)
	}
	if err := syncDir(filepath.Join(s.dir, sub)); err != nil {
		// The rename may not be durable: do not claim the message.
		os.Remove(final)
		return "", err
	}
	return id, nil
}

func writeSynced(path string, env envelope, m *postern.Message) (err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("spool: %w", cerr)
		}
	}()
	w := bufio.NewWriterSize(f, 64<<10)
	line, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	w.Write(line)
	w.WriteByte('\n')
	if err := m.Render(w); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}
