package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/smtpserver"
)

// The relay's flags are another way to write keys of the configuration
// file: a flag given on the command line wins over the file, which wins
// over the built-in defaults. The flags are parsed after the file is read,
// so -h shows the values in force. Which key has which flag is declared in
// keys.go.

// commandSettings reads a command's configuration file and flags and
// resolves them. On failure it has told stderr why (nothing when -h was
// asked for) and ok is false.
func commandSettings(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (s *Config, path string, ok bool) {
	cfg, path, _, err := loadWithFlags(name, args, stderr, extra)
	if err == nil {
		s, err = cfg.resolved()
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "relay:", safe(err.Error())) // may quote the file
		}
		return nil, path, false
	}
	return s, path, true
}

// configArg finds -config in args before the flags are parsed.
func configArg(args []string) string {
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		if !strings.HasPrefix(args[i], "-") {
			continue
		}
		if v, ok := strings.CutPrefix(a, "config="); ok {
			return v
		}
		if a == "config" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// loadWithFlags reads the file named by -config (if any), applies the
// defaults and then the flags. extra adds command-specific flags.
func loadWithFlags(name string, args []string, stderr interface{ Write([]byte) (int, error) }, extra func(*flag.FlagSet)) (*Config, string, *flag.FlagSet, error) {
	path := configArg(args)
	cfg := &Config{}
	if path != "" {
		var err error
		if cfg, err = loadConfig(path); err != nil {
			return nil, path, nil, err
		}
	}
	if err := cfg.applyDefaults(); err != nil {
		return nil, path, nil, err
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", path, "TOML configuration `file` (see docs/configuration.md); flags override its keys")
	bindFlags(fs, cfg)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, path, fs, err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "policy-order" {
			cfg.Policy.orderAt = "-policy-order"
		}
	})
	// Old keys the file set were moved by applyDefaults; old flags now.
	cfg.applyRenamed(flagKeys(fs))
	if err := cfg.validate(); err != nil {
		return nil, path, fs, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return cfg, path, fs, nil
}

// listValue is a comma-separated flag for a []string key.
type listValue []string

func (l *listValue) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *listValue) Set(v string) error { *l = splitList(v); return nil }

// dkimFlag reads -dkim-key domain:selector:keyfile,...
type dkimFlag []DKIMKey

func (d *dkimFlag) String() string {
	if d == nil {
		return ""
	}
	var out []string
	for _, k := range *d {
		out = append(out, k.Domain+":"+k.Selector+":"+k.Key)
	}
	return strings.Join(out, ",")
}

func (d *dkimFlag) Set(v string) error {
	*d = nil
	for _, spec := range splitList(v) {
		parts := strings.SplitN(spec, ":", 3)
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return fmt.Errorf("%q is not domain:selector:keyfile", spec)
		}
		*d = append(*d, DKIMKey{Domain: parts[0], Selector: parts[1], Key: parts[2]})
	}
	return nil
}

// logger makes the relay's logger.
func (s *Config) logger(w interface{ Write([]byte) (int, error) }) *slog.Logger {
	opts := &slog.HandlerOptions{Level: s.logLevel}
	if s.logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// resolved resolves c (see resolve) and returns it.
func (c *Config) resolved() (*Config, error) { return c, c.resolve() }

// resolve derives what the builders read besides the keys themselves:
// the domain lists, parsed networks, the hop and log settings, the
// defaults that depend on other keys. It may run again (after a reload
// kept restart-only keys).
func (c *Config) resolve() error {
	if len(c.Policy.Order) == 0 {
		c.Policy.Order = slices.Clone(defaultOrder) // -policy-order "": the default
	}
	c.queueWarn = c.Queue.Warn.Duration
	if c.queueWarn == 0 {
		c.queueWarn = -1 // never
	}
	c.maxSize = int64(c.MaxMessageSize)
	c.harvest = ratelimit.GuardConfig{Threshold: c.Limits.HarvestThreshold, Window: c.Limits.HarvestWindow.Duration,
		HoldTime: c.Limits.HarvestHold.Duration}
	c.localDomains, c.domains = nil, nil
	for _, d := range c.LocalDomains {
		c.localDomains = append(c.localDomains, strings.ToLower(d))
	}
	c.domains = append(c.domains, c.localDomains...)
	for _, d := range c.RelayDomains {
		c.domains = append(c.domains, strings.ToLower(d))
	}
	var err error
	if c.trusted, err = parsePrefixes(strings.Join(c.TrustedNetworks, ",")); err != nil {
		return err
	}
	if c.outExempt, err = parsePrefixes(strings.Join(c.Limits.OutboundExempt, ",")); err != nil {
		return keyErr("limits.outbound_exempt", "%v", err)
	}
	// The queue keeps addresses in canonical form (postern.Address).
	for _, a := range []struct {
		key string
		p   *string
	}{{"delivery.postmaster", &c.Delivery.Postmaster}, {"stats.daily_to", &c.Stats.DailyTo}} {
		if *a.p == "" {
			continue
		}
		if *a.p, err = envelopeAddr(*a.p); err != nil {
			return keyErr(a.key, "%v", err)
		}
	}
	if c.Control.Socket == "" {
		c.Control.Socket = c.Spool + "/control.sock"
	}
	if c.Stats.Dir == "" {
		c.Stats.Dir = c.Spool + "/stats"
	}
	if err := c.logLevel.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	c.logJSON = c.Log.Format == "json"
	c.refuseQuoted = c.SMTP.QuotedLocalParts == "refuse"
	if c.bareNewline, err = smtpserver.ParseBareNewline(c.SMTP.BareNewline); err != nil {
		return fmt.Errorf("smtp.bare_newline: %w", err)
	}
	if c.hostChecks, err = hostChecks(c.Policy.HELOChecks, c.Policy.ClientChecks); err != nil {
		return err
	}
	return c.resolveFront()
}
