package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/queue"
)

// The documentation is part of the product: every configuration and every
// relay command it shows must still parse and still mean what the text
// around it says. This test reads README.md and docs/*.md and
//
//   - parses every ```toml block with the relay's own loader (strict:
//     unknown keys and wrong types fail) and resolves it into settings;
//   - runs every relay command shown (`relay …`, `postern-relay …`,
//     `go run ./examples/relay …`) against the relay binary, offline, and
//     compares the output printed under a "$" prompt with the real one;
//     synopses (placeholders such as F, <id>, a|b) have their commands,
//     subcommands and flags checked instead; what needs a running relay is
//     skipped with the reason logged;
//   - checks each key table row of docs/configuration.md: the key exists,
//     and the default column says what `relay serve -h` shows;
//   - checks the README's flag examples and the reference's example error
//     message.

// docFiles are the Markdown files the test reads, relative to this
// package.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../docs/*.md")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	return append([]string{"../../README.md"}, files...)
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// buildRelay builds the relay binary once for the test.
func buildRelay(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "relay")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "building the relay: %s", out)
	return bin
}

var tomlBlockRE = regexp.MustCompile("(?s)```toml\n(.*?)```")

func TestDocsConfigurationsParse(t *testing.T) {
	n := 0
	for _, path := range docFiles(t) {
		for i, m := range tomlBlockRE.FindAllStringSubmatch(readDoc(t, path), -1) {
			name := fmt.Sprintf("%s block %d", filepath.Base(path), i+1)
			t.Run(name, func(t *testing.T) {
				cfg, err := parseConfig([]byte(m[1]), name)
				require.NoError(t, err)
				require.NoError(t, cfg.applyDefaults())
				_, err = cfg.resolved()
				require.NoError(t, err)
			})
			n++
		}
	}
	assert.GreaterOrEqual(t, n, 2, "the migration guide and the two-relay page show configurations")
}

// docCommand is a relay command found in a document.
type docCommand struct {
	doc  string   // file name
	line int      // where it starts
	args []string // after "relay"
	// installed: written as the installed binary (postern-relay), as
	// run on the site the document sets up.
	installed bool
	// output is what the document shows it printing (a "$" prompt in
	// an indented block); nil when it shows none.
	output []string
}

func (c docCommand) String() string {
	return fmt.Sprintf("%s:%d: relay %s", c.doc, c.line, strings.Join(c.args, " "))
}

var commandRE = regexp.MustCompile(`^(go run \./examples/relay|postern-relay|relay)(?:\s+(.*))?$`)

var fenceRE = regexp.MustCompile("(?ms)^```.*?^```")

// codeSpan is an inline code span and the line it starts on.
type codeSpan struct {
	line int
	text string
}

// inlineCode returns a Markdown text's code spans as CommonMark reads
// them: a run of n backticks opens a span that the next run of exactly n
// closes (so “FEATURE(`x')“ holds backticks), across line ends, never
// inside fenced blocks. Line ends and the one space that pads a span
// are dropped.
func inlineCode(text string) []codeSpan {
	// Blank the fenced blocks out, keeping their line ends.
	text = fenceRE.ReplaceAllStringFunc(text, func(b string) string {
		return strings.Repeat("\n", strings.Count(b, "\n"))
	})
	run := func(i int) int {
		n := 0
		for i+n < len(text) && text[i+n] == '`' {
			n++
		}
		return n
	}
	var out []codeSpan
	for i := 0; i < len(text); {
		n := run(i)
		if n == 0 {
			i++
			continue
		}
		j := i + n
		for j < len(text) {
			if m := run(j); m == n {
				break
			} else if m > 0 {
				j += m
			} else {
				j++
			}
		}
		if j >= len(text) {
			i += n // no closing run: literal backticks
			continue
		}
		body := strings.ReplaceAll(text[i+n:j], "\n", " ")
		if len(body) > 2 && body[0] == ' ' && body[len(body)-1] == ' ' {
			body = body[1 : len(body)-1]
		}
		out = append(out, codeSpan{line: 1 + strings.Count(text[:i], "\n"), text: body})
		i = j + n
	}
	return out
}

// docCommands finds the relay commands of a document: in inline code
// (which may wrap across lines, and escapes | in tables) and in indented
// blocks, where "$ " starts a command, "\" continues it and the lines
// after it are its output.
func docCommands(t *testing.T, path string) []docCommand {
	t.Helper()
	text := readDoc(t, path)
	var out []docCommand
	add := func(line int, cmd string, output []string) {
		cmd = strings.Join(strings.Fields(strings.ReplaceAll(cmd, `\|`, "|")), " ")
		m := commandRE.FindStringSubmatch(cmd)
		// A bare `relay` is the word (the relay, the relay control
		// filter); the bare command is written `go run ./examples/relay`.
		if m == nil || m[1] == "relay" && m[2] == "" {
			return
		}
		out = append(out, docCommand{doc: filepath.Base(path), line: line, args: shellWords(m[2]),
			installed: m[1] == "postern-relay", output: output})
	}
	for _, sp := range inlineCode(text) {
		add(sp.line, sp.text, nil)
	}
	lines := strings.Split(text, "\n")
	inFence := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(l, "    ") {
			continue
		}
		body := strings.TrimPrefix(l, "    ")
		prompt := strings.HasPrefix(body, "$ ")
		cmd := strings.TrimPrefix(body, "$ ")
		start := i
		for strings.HasSuffix(cmd, `\`) && i+1 < len(lines) {
			i++
			cmd = strings.TrimSuffix(cmd, `\`) + " " + strings.TrimSpace(lines[i])
		}
		var output []string
		for prompt && i+1 < len(lines) && (strings.HasPrefix(lines[i+1], "    ") || lines[i+1] == "") &&
			!strings.HasPrefix(strings.TrimPrefix(lines[i+1], "    "), "$ ") {
			// An indented block ends at its last indented line.
			if lines[i+1] == "" && (i+2 >= len(lines) || !strings.HasPrefix(lines[i+2], "    ")) {
				break
			}
			i++
			output = append(output, strings.TrimPrefix(lines[i], "    "))
		}
		add(start+1, cmd, output)
	}
	return out
}

// shellWords splits a command line as a shell would for the forms the
// documents use: words at white space, 'single' and "double" quotes kept
// together and removed.
func shellWords(s string) []string {
	var out []string
	var w strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			w.WriteByte(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				out = append(out, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, w.String())
	}
	return out
}

// A synopsis names a command with placeholders instead of running it.
var placeholderRE = regexp.MustCompile(`^[A-Z]$|^<.*>$|[|\[\]…]`)

func isSynopsis(args []string) bool {
	return slices.ContainsFunc(args, placeholderRE.MatchString)
}

// docEnv is where a document's commands run: a directory standing for
// the machine the document describes.
type docEnv struct {
	dir     string
	replace *strings.Replacer // the document's paths to the stand-ins
	// queued is the number of messages in the site's spool: what the
	// installed commands must see (the others name commands, as the
	// migration guide's table of sendmail habits does, and run in an
	// empty directory).
	queued int
}

// envFor makes the stand-in for a document. The migration guide's
// commands name /etc/postern/relay.toml (the configuration it shows, with
// the example's access file and mailertable) and its spool holds one
// message; the other documents' commands run where a newcomer runs them,
// in an empty directory holding an empty relay.toml.
func envFor(t *testing.T, path string) docEnv {
	t.Helper()
	dir := t.TempDir()
	env := docEnv{dir: dir, replace: strings.NewReplacer()}
	if !strings.HasSuffix(path, "migrating-from-sendmail.md") {
		writeTestFile(t, filepath.Join(dir, "relay.toml"), "")
		return env
	}
	etc, spool := filepath.Join(dir, "etc", "postern"), filepath.Join(dir, "spool")
	env.replace = strings.NewReplacer("/etc/postern/", etc+"/", "/var/spool/postern", spool)
	blocks := tomlBlockRE.FindAllStringSubmatch(readDoc(t, path), -1)
	require.Len(t, blocks, 1, "the guide shows one configuration")
	writeTestFile(t, filepath.Join(etc, "relay.toml"), env.replace.Replace(blocks[0][1]))
	for _, f := range []string{"access", "mailertable"} {
		b, err := os.ReadFile(filepath.Join("migration", f))
		require.NoError(t, err)
		writeTestFile(t, filepath.Join(etc, f), string(b))
	}
	q, err := queue.Open(queue.Config{Dir: spool})
	require.NoError(t, err)
	_, err = q.Enqueue(context.Background(), queue.Envelope{ID: "WAITING1", From: "a@nix.co.jj",
		Recipients: []queue.Recipient{{Addr: "b@example.org"}}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	require.NoError(t, err)
	require.NoError(t, q.Close())
	env.queued = 1
	return env
}

func writeTestFile(t *testing.T, path, body string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
}

// relayRun runs the binary with a time limit and returns its exit code
// and everything it printed.
func relayRun(t *testing.T, bin, dir string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee) && ctx.Err() == nil:
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("relay %s: %v: %s", strings.Join(args, " "), err, out)
	return 0, ""
}

// needsServer says why a command can only be shown against a running
// relay, "" when it runs offline.
func needsServer(args []string) string {
	switch {
	case len(args) == 0 || strings.HasPrefix(args[0], "-") || args[0] == "serve":
		return "serves until stopped; examples/relay/internal/integration TestQuickStart runs it"
	case args[0] == "milter":
		return "serves until stopped; examples/relay/internal/integration TestPostfixMilterReloadAndMetrics runs it"
	case args[0] == "reload":
		return "asks a running relay over its control socket; examples/relay/internal/integration TestReloadUnderLoad runs it"
	case args[0] == "stats" && slices.Contains(args, "-mail"):
		return "needs stats.daily_to, set in the site's configuration; TestStatsMailOnStoppedRelay and examples/relay/internal/integration TestSite004DailyMail run it"
	}
	return ""
}

// commandGroups need a subcommand; a document may name the group alone.
var commandGroups = map[string]bool{"queue": true, "quarantine": true, "dkim": true}

func TestDocsCommands(t *testing.T) {
	bin := buildRelay(t)
	ran := 0
	for _, path := range docFiles(t) {
		env := envFor(t, path)
		for _, c := range docCommands(t, path) {
			t.Run(c.String(), func(t *testing.T) {
				if why := needsServer(c.args); why != "" && !isSynopsis(c.args) {
					t.Skip(why)
				}
				if isSynopsis(c.args) {
					checkSynopsis(t, bin, env.dir, c.args)
					return
				}
				args := make([]string, len(c.args))
				for i, a := range c.args {
					args[i] = env.replace.Replace(a)
				}
				code, out := relayRun(t, bin, env.dir, args...)
				if len(args) == 1 && commandGroups[args[0]] {
					// Named alone: it must answer with its own usage, not
					// as an unknown command.
					assert.Contains(t, out, "usage: relay "+args[0]+" ")
					return
				}
				require.Equal(t, 0, code, "%s", out)
				ran++
				queued := 0
				if c.installed {
					queued = env.queued
				}
				checkMeaning(t, queued, args, out)
				if c.output != nil {
					compareOutput(t, c.output, out, args[0] == "stats")
				}
			})
		}
	}
	assert.GreaterOrEqual(t, ran, 8, "the documents show commands that run offline")
}

// checkMeaning checks what the text says a command does, beyond its exit
// status.
func checkMeaning(t *testing.T, queued int, args []string, out string) {
	t.Helper()
	switch {
	case args[0] == "queue" && len(args) > 1 && args[1] == "list":
		assert.Contains(t, out, fmt.Sprintf("-- %d message(s)", queued), "the queue of the spool the document means")
	case args[0] == "check-config":
		assert.Contains(t, out, "configuration OK")
	case args[0] == "check":
		assert.Contains(t, out, "=> message: ", "the dry run goes to the end of the transaction")
		if slices.Contains(args, "-config") && slices.Contains(args, "postmaster@nix.co.jj") {
			assert.Regexp(t, `To:postmaster@nix\.co\.jj DISCARD \(.*access:\d+\)`, out, "shows which entry decides, and where it is")
		}
	case args[0] == "dkim":
		assert.Contains(t, out, "._domainkey.")
	}
}

var digitsRE = regexp.MustCompile(`[0-9]+`)

// compareOutput compares what a document shows a command printing with
// what it printed: line by line, white space collapsed, a "..." line
// standing for any lines and a line ending in " ..." for any line that
// starts with the rest. With masked, numbers may differ (statistics of
// other mail, dates).
func compareOutput(t *testing.T, want []string, got string, masked bool) {
	t.Helper()
	norm := func(s string) string {
		s = strings.Join(strings.Fields(s), " ")
		if masked {
			s = digitsRE.ReplaceAllString(s, "#")
		}
		return s
	}
	var lines []string
	for _, l := range strings.Split(got, "\n") {
		if l = norm(l); l != "" {
			lines = append(lines, l)
		}
	}
	pos, skip := 0, false
	for _, w := range want {
		w = norm(w)
		switch {
		case w == "":
			continue
		case w == "..." || w == "…":
			skip = true
			continue
		}
		i := slices.IndexFunc(lines[pos:], func(l string) bool {
			if prefix, ok := strings.CutSuffix(w, " ..."); ok {
				return strings.HasPrefix(l, prefix+" ")
			}
			return l == w
		})
		if i < 0 || (i > 0 && !skip) {
			assert.Failf(t, "the document shows output the command does not print",
				"want line %q at line %d of the output\nshown:\n%s\nprinted:\n%s", w, pos+1, strings.Join(want, "\n"), got)
			return
		}
		pos += i + 1
		skip = false
	}
}

var usageFlagRE = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

// checkSynopsis checks a command written with placeholders: the command
// and its subcommand alternatives exist, and so do its flags.
func checkSynopsis(t *testing.T, bin, dir string, args []string) {
	t.Helper()
	sub := args[0]
	switch {
	case strings.Contains(sub, "|"):
		// relay queue|quarantine
		for _, alt := range strings.Split(sub, "|") {
			checkSynopsis(t, bin, dir, append([]string{alt}, args[1:]...))
		}
		return
	case commandGroups[sub]:
		_, usage := relayRun(t, bin, dir, sub)
		require.Contains(t, usage, "usage: relay "+sub+" ", "%s is a command", sub)
		if len(args) > 1 && !strings.HasPrefix(args[1], "-") && args[1] != "…" {
			for _, alt := range strings.Split(strings.Trim(args[1], "[]"), "|") {
				assert.Regexp(t, `usage: relay `+sub+` (\S+\|)*`+regexp.QuoteMeta(alt)+`\b`, usage, "relay %s has %s", sub, alt)
			}
		}
		return
	}
	_, usage := relayRun(t, bin, dir, sub, "-h")
	require.Contains(t, usage, "Usage of relay "+sub+":", "%s is a command", sub)
	have := map[string]bool{}
	for _, m := range usageFlagRE.FindAllStringSubmatch(usage, -1) {
		have[m[1]] = true
	}
	for _, a := range args[1:] {
		if f, ok := strings.CutPrefix(strings.Trim(a, "[]"), "-"); ok && f != "" {
			assert.True(t, have[f], "relay %s has no flag -%s", sub, f)
		}
	}
}

// serveDefaults reads `relay serve -h`: every flag and the default it
// shows ("" when it shows none: the zero value).
func serveDefaults(t *testing.T, bin string) map[string]string {
	t.Helper()
	code, out := relayRun(t, bin, t.TempDir(), "serve", "-h")
	require.Equal(t, 2, code, out)
	flags := map[string]string{}
	for _, chunk := range strings.Split(out, "\n  -")[1:] {
		name, _, _ := strings.Cut(strings.Fields(chunk)[0], " ")
		def := ""
		if i := strings.LastIndex(chunk, " (default "); i >= 0 {
			def = strings.TrimSuffix(strings.TrimSpace(chunk[i+len(" (default "):]), ")")
			if uq, err := strconv.Unquote(def); err == nil {
				def = uq
			}
		}
		flags[name] = def
	}
	require.Greater(t, len(flags), 60)
	return flags
}

// keyRow is one row of a key table in docs/configuration.md.
type keyRow struct {
	line                int
	key, typ, def, flag string
}

var keyRowRE = regexp.MustCompile("^\\| `([a-z_.]+)` \\| ([a-z]+) \\| ([^|]*) \\| ([^|]*) \\|")

func keyRows(t *testing.T) []keyRow {
	t.Helper()
	var rows []keyRow
	for i, l := range strings.Split(readDoc(t, "../../docs/configuration.md"), "\n") {
		m := keyRowRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		rows = append(rows, keyRow{line: i + 1, key: m[1], typ: m[2], def: strings.TrimSpace(m[3]), flag: strings.TrimSpace(m[4])})
	}
	require.Greater(t, len(rows), 60)
	return rows
}

// TestDocsKeyDefaults: each documented key exists, and its default is
// the one `relay serve -h` shows for its flag.
func TestDocsKeyDefaults(t *testing.T) {
	bin := buildRelay(t)
	flags := serveDefaults(t, bin)
	keys := configKeys()
	for _, r := range keyRows(t) {
		t.Run(r.key, func(t *testing.T) {
			require.Contains(t, keys, r.key, "configuration.md:%d documents a key the relay does not have", r.line)
			flag := regexp.MustCompile(`-[a-z][a-z0-9-]*`).FindString(r.flag)
			if flag == "" {
				t.Skipf("configuration.md:%d: no flag, so serve -h cannot show its default", r.line)
			}
			shown, ok := flags[flag[1:]]
			require.True(t, ok, "configuration.md:%d: serve has no flag %s", r.line, flag)
			want, literal := docDefault(r.def)
			if !literal {
				// Prose ("none", "off", "the host name") or a value made
				// from other keys ("<spool>/control.sock"): the flag has
				// no default of its own, or its usage says the same.
				said := strings.Trim(r.def, "`\"")
				assert.True(t, zeroDefault(shown) || shown == said,
					"configuration.md:%d: %s: the document says %s, serve -h shows %q", r.line, r.key, r.def, shown)
				return
			}
			assert.Equal(t, normDefault(t, r.typ, want), normDefault(t, r.typ, shown),
				"configuration.md:%d: %s: the document says %s, serve -h shows %q", r.line, r.key, r.def, shown)
		})
	}
}

// docDefault is the literal a default cell starts with: `"10m"`, `50`,
// `["a", "b"]`. A cell of prose, or a literal naming other values
// (`"<spool>/control.sock"`), is not literal.
func docDefault(cell string) (string, bool) {
	if !strings.HasPrefix(cell, "`") {
		return "", false
	}
	lit, _, _ := strings.Cut(cell[1:], "`")
	if strings.Contains(lit, "<") {
		return "", false
	}
	return lit, true
}

func zeroDefault(shown string) bool {
	switch shown {
	case "", "0", "false", "0s":
		return true
	}
	return false
}

// normDefault puts a value in one form for its type: a documented TOML
// literal or a flag's default.
func normDefault(t *testing.T, typ, v string) string {
	t.Helper()
	if uq, err := strconv.Unquote(v); err == nil {
		v = uq
	}
	switch typ {
	case "duration":
		var d Duration
		if v != "" {
			require.NoError(t, d.UnmarshalText([]byte(v)))
		}
		return d.String()
	case "size":
		var s Size
		require.NoError(t, s.UnmarshalText([]byte(v)))
		return strconv.FormatInt(int64(s), 10)
	case "rate":
		r, err := parseRate(v)
		require.NoError(t, err)
		return r.String()
	case "list":
		if strings.HasPrefix(v, "[") {
			var doc struct{ V []string }
			require.NoError(t, toml.Unmarshal([]byte("V = "+v), &doc))
			return strings.Join(doc.V, ",")
		}
	case "int", "number":
		if v == "" {
			return "0"
		}
		f, err := strconv.ParseFloat(v, 64)
		require.NoError(t, err)
		return strconv.FormatFloat(f, 'g', -1, 64)
	case "bool":
		if v == "" {
			return "false"
		}
	}
	return v
}

// The README's flag examples are flags of relay serve, or of the admin
// commands its table shows them with.
func TestDocsReadmeFlags(t *testing.T) {
	have := map[string]bool{}
	for _, cmd := range [][]string{{"serve"}, {"queue", "delete"}, {"stats"}} {
		var out, errb bytes.Buffer
		run(append(cmd, "-h"), &out, &errb)
		for _, m := range usageFlagRE.FindAllStringSubmatch(out.String()+errb.String(), -1) {
			have[m[1]] = true
		}
	}
	require.True(t, have["listen"] && have["dry-run"] && have["mail"], "the usage of serve, queue delete and stats")
	// The flags after "Benchmarks and reliability" are those of go run
	// ./bench and ./reliability.
	readme, _, _ := strings.Cut(readDoc(t, "../../README.md"), "## Benchmarks and reliability")
	n := 0
	for _, sp := range inlineCode(readme) {
		if !regexp.MustCompile(`^-[a-z]`).MatchString(sp.text) {
			continue
		}
		for _, tok := range strings.Fields(sp.text) {
			if f, ok := strings.CutPrefix(tok, "-"); ok && regexp.MustCompile(`^[a-z]`).MatchString(f) {
				assert.True(t, have[f], "README.md shows -%s, which relay serve does not have", f)
				n++
			}
		}
	}
	assert.GreaterOrEqual(t, n, 10)
}

// The reference's example of an error message is what the loader says.
func TestDocsExampleError(t *testing.T) {
	doc := readDoc(t, "../../docs/configuration.md")
	m := regexp.MustCompile("`(relay\\.toml):(\\d+): ([a-z_]+)\\.([a-z_]+): (\"[^\"]*\") ([^`]*)`").FindStringSubmatch(doc)
	require.NotNil(t, m, "the reference shows an example error")
	line, err := strconv.Atoi(m[2])
	require.NoError(t, err)
	// A file with the key in its section, on the line the example names.
	file := strings.Repeat("# comment\n", line-2) + "[" + m[3] + "]\n" + m[4] + " = " + m[5] + "\n"
	_, err = parseConfig([]byte(file), m[1])
	require.Error(t, err)
	assert.Contains(t, err.Error(), strings.Trim(m[0], "`"))
}

// The senders file line the reference shows is one the relay reads, and
// it gives the user what it lists.
func TestDocsSendersExample(t *testing.T) {
	var row string
	for _, l := range strings.Split(readDoc(t, "../../docs/configuration.md"), "\n") {
		if strings.HasPrefix(l, "| `submission.senders` |") {
			row = l
		}
	}
	require.NotEmpty(t, row)
	var line string
	for _, sp := range inlineCode(row) {
		if strings.Contains(sp.text, ": ") && strings.Contains(sp.text, "@") {
			line = sp.text
		}
	}
	require.NotEmpty(t, line, "the row shows a line of the file")
	b, err := auth.ParseSenderBindings(strings.NewReader(line+"\n"), "configuration.md")
	require.NoError(t, err)
	user, list, _ := strings.Cut(line, ":")
	for _, e := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		addr := e
		if strings.HasPrefix(e, "@") {
			addr = "someone" + e
		}
		assert.True(t, b.Allowed(user, addr), "%s may send as %s", user, addr)
	}
}

// The reference's table of filters names every filter policy.order
// knows, in the default order, and says when each is there.
func TestDocsFilterTable(t *testing.T) {
	doc := readDoc(t, "../../docs/configuration.md")
	_, table, ok := strings.Cut(doc, "| name | is there when | does |")
	require.True(t, ok, "configuration.md has the table of filters")
	var names []string
	for _, l := range strings.Split(table, "\n")[2:] {
		m := regexp.MustCompile("^\\| `([a-z-]+)` \\|").FindStringSubmatch(l)
		if m == nil {
			break
		}
		names = append(names, m[1])
	}
	assert.Equal(t, defaultOrder, names)
	for _, n := range defaultOrder {
		assert.NotEmpty(t, filterKeys[n], "order.go says when %s is there", n)
	}
	m := regexp.MustCompile("\\| `policy.order` \\| list \\| `(\\[[^`]*\\])`").FindStringSubmatch(doc)
	require.NotNil(t, m)
	var def struct{ V []string }
	require.NoError(t, toml.Unmarshal([]byte("V = "+m[1]), &def))
	assert.Equal(t, defaultOrder, def.V, "the documented default order")
}
