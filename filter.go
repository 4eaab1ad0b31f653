package postern

import "context"

// Filter is a named policy. A filter implements one or more of the stage
// interfaces below; the Chain asks it only at those stages. Filters are
// shared by all sessions and must be safe for concurrent use: per-session
// state comes only through the arguments, as with http.Handler.
type Filter interface {
	Name() string
}

// ConnectChecker decides on a new connection, before the banner.
type ConnectChecker interface {
	Filter
	CheckConnect(ctx context.Context, c *Conn) (Verdict, error)
}

// HeloChecker decides on the HELO/EHLO argument (c.HELO).
type HeloChecker interface {
	Filter
	CheckHelo(ctx context.Context, c *Conn) (Verdict, error)
}

// MailChecker decides on MAIL FROM (t.From, t.Mail).
type MailChecker interface {
	Filter
	CheckMail(ctx context.Context, c *Conn, t *Txn) (Verdict, error)
}

// RcptChecker decides on one RCPT TO. r is not yet in t.Rcpts.
type RcptChecker interface {
	Filter
	CheckRcpt(ctx context.Context, c *Conn, t *Txn, r *Rcpt) (Verdict, error)
}

// DataChecker decides on the whole message after DATA. It may record header
// edits on m.
type DataChecker interface {
	Filter
	CheckData(ctx context.Context, c *Conn, t *Txn, m *Message) (Verdict, error)
}

// ConnectFunc makes a ConnectChecker of a function.
func ConnectFunc(name string, f func(ctx context.Context, c *Conn) (Verdict, error)) ConnectChecker {
	return connectFunc{name, f}
}

// HeloFunc makes a HeloChecker of a function.
func HeloFunc(name string, f func(ctx context.Context, c *Conn) (Verdict, error)) HeloChecker {
	return heloFunc{name, f}
}

// MailFunc makes a MailChecker of a function.
func MailFunc(name string, f func(ctx context.Context, c *Conn, t *Txn) (Verdict, error)) MailChecker {
	return mailFunc{name, f}
}

// RcptFunc makes a RcptChecker of a function.
func RcptFunc(name string, f func(ctx context.Context, c *Conn, t *Txn, r *Rcpt) (Verdict, error)) RcptChecker {
	return rcptFunc{name, f}
}

// DataFunc makes a DataChecker of a function.
func DataFunc(name string, f func(ctx context.Context, c *Conn, t *Txn, m *Message) (Verdict, error)) DataChecker {
	return dataFunc{name, f}
}

type connectFunc struct {
	name string
	f    func(context.Context, *Conn) (Verdict, error)
}

func (f connectFunc) Name() string { return f.name }
func (f connectFunc) CheckConnect(ctx context.Context, c *Conn) (Verdict, error) {
	return f.f(ctx, c)
}

type heloFunc struct {
	name string
	f    func(context.Context, *Conn) (Verdict, error)
}

func (f heloFunc) Name() string { return f.name }
func (f heloFunc) CheckHelo(ctx context.Context, c *Conn) (Verdict, error) {
	return f.f(ctx, c)
}

type mailFunc struct {
	name string
	f    func(context.Context, *Conn, *Txn) (Verdict, error)
}

func (f mailFunc) Name() string { return f.name }
func (f mailFunc) CheckMail(ctx context.Context, c *Conn, t *Txn) (Verdict, error) {
	return f.f(ctx, c, t)
}

type rcptFunc struct {
	name string
	f    func(context.Context, *Conn, *Txn, *Rcpt) (Verdict, error)
}

func (f rcptFunc) Name() string { return f.name }
func (f rcptFunc) CheckRcpt(ctx context.Context, c *Conn, t *Txn, r *Rcpt) (Verdict, error) {
	return f.f(ctx, c, t, r)
}

type dataFunc struct {
	name string
	f    func(context.Context, *Conn, *Txn, *Message) (Verdict, error)
}

func (f dataFunc) Name() string { return f.name }
func (f dataFunc) CheckData(ctx context.Context, c *Conn, t *Txn, m *Message) (Verdict, error) {
	return f.f(ctx, c, t, m)
}
