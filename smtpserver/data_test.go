package smtpserver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

// refLines splits text into lines at CRLF, a lone CR or a lone LF. rest is
// a last line without an end; bare says whether a lone CR or LF was seen.
func refLines(text []byte) (lines [][]byte, rest []byte, bare bool) {
	start := 0
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '\r':
			lines = append(lines, text[start:i])
			if i+1 < len(text) && text[i+1] == '\n' {
				i++
			} else {
				bare = true
			}
			start = i + 1
		case '\n':
			lines = append(lines, text[start:i])
			bare = true
			start = i + 1
		}
	}
	return lines, text[start:], bare
}

// refData is the reference reading of what a client sends after 354,
// RFC 5321 word for word: the data ends at the first CRLF "." CRLF, the
// CRLF after the 354 counting as the first (§4.1.1.4); a line that starts
// with "." and has more loses the dot (§4.5.2); bare CR and LF end lines
// (normalised). It returns the message, the bytes of stream used (end
// marker included), whether a bare line end was seen, and ok false when
// the data has not ended.
func refData(stream []byte) (msg []byte, used int, bare, ok bool) {
	i := bytes.Index(append([]byte("\r\n"), stream...), []byte("\r\n.\r\n"))
	if i < 0 {
		return nil, 0, false, false
	}
	// The marker is stream[i-2:i+3] (or ".\r\n" at i = 0); the body keeps
	// the marker's first CRLF as the end of its last line.
	lines, _, bare := refLines(stream[:i])
	for _, l := range lines {
		if len(l) > 1 && l[0] == '.' {
			l = l[1:]
		}
		msg = append(append(msg, l...), '\r', '\n')
	}
	return msg, i + 3, bare, true
}

// refBDAT is the reference normalisation of BDAT text: the same line ends,
// no dots.
func refBDAT(text []byte) (msg []byte, bare bool) {
	lines, rest, bare := refLines(text)
	for _, l := range lines {
		msg = append(append(msg, l...), '\r', '\n')
	}
	return append(msg, rest...), bare
}

func TestDataDecoder(t *testing.T) {
	tests := []struct {
		name, in string
		// out is what go-smtp gets (dot-stuffed); "" with end false: not
		// ended.
		out  string
		end  bool
		bare byte
	}{
		{"empty message", ".\r\n", ".\r\n", true, 0},
		{"plain", "a\r\nb\r\n.\r\n", "a\r\nb\r\n.\r\n", true, 0},
		{"stuffed lines", "..\r\n.x\r\n...\r\n.\r\n", "..\r\nx\r\n...\r\n.\r\n", true, 0},
		{"reported: . CR CR LF", "line\r\n.\r\r\n.\r\nMAIL FROM:<e@x>\r\n", "line\r\n..\r\n\r\n.\r\n", true, '\r'},
		{"reported: . CR X", "\r\n.\rX\r\n.\r\n", "\r\n..\r\nX\r\n.\r\n", true, '\r'},
		{"bare CR . CR", "a\r.\r\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", true, '\r'},
		{"LF . LF", "a\n.\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", true, '\n'},
		{"CRLF . LF", "a\r\n.\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", true, '\n'},
		{"LF . CRLF", "a\n.\r\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", true, '\n'},
		{"CR CR LF", "a\r\r\n.\r\n", "a\r\n\r\n.\r\n", true, '\r'},
		{"not ended", "a\r\n.\r", "a\r\n", false, 0},
		{"leading dot, stuffed twice", "...x\r\n.\r\n", "...x\r\n.\r\n", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Byte by byte and all at once must agree.
			for _, step := range []int{1, len(tt.in)} {
				var d dataDecoder
				d.reset(true)
				var out []byte
				end := false
				used := 0
				for used < len(tt.in) && !end {
					var n int
					out, n, end = d.decode(out, []byte(tt.in[used:min(used+step, len(tt.in))]))
					used += n
				}
				assert.Equal(t, tt.out, string(out), "step %d", step)
				assert.Equal(t, tt.end, end)
				assert.Equal(t, tt.bare, d.bare)
				if end {
					ref, refUsed, _, ok := refData([]byte(tt.in))
					require.True(t, ok)
					assert.Equal(t, refUsed, used, "the end is where the reference puts it")
					assert.Equal(t, string(ref), unstuff(out))
				}
			}
		})
	}
}

// unstuff reads canonical DATA text as go-smtp does.
func unstuff(b []byte) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(string(b), "\r\n") {
		if l == ".\r\n" {
			break
		}
		out.WriteString(strings.TrimPrefix(l, "."))
	}
	return out.String()
}

// rawHandoff keeps each message as received (without the Received field
// the server adds), by queue ID.
type rawHandoff struct {
	mu   sync.Mutex
	msgs map[string][]byte
}

func (h *rawHandoff) Handoff(_ context.Context, _ *postern.Conn, t *postern.Txn, m *postern.Message) (string, error) {
	b, err := io.ReadAll(m.NewReader())
	if err != nil {
		return "", err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.msgs == nil {
		h.msgs = make(map[string][]byte)
	}
	h.msgs[t.ID] = b
	return t.ID, nil
}

func (h *rawHandoff) get(id string) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.msgs[id]
	return b, ok
}

// pipeServer runs a Server on in-memory connections.
type pipeServer struct {
	srv *Server
	l   *testutil.PipeListener
	h   *rawHandoff
}

func newPipeServer(t testing.TB, cfg Config) *pipeServer {
	ps := &pipeServer{h: &rawHandoff{}}
	cfg.Handoff = ps.h
	cfg.CommandTimeout, cfg.DataTimeout = 5*time.Second, 5*time.Second
	ps.srv, ps.l = startPipeServer(t, cfg)
	return ps
}

// dialog writes each of writes in turn and returns every reply until the
// server closes the connection (or 10 s pass: a hang is a failure).
func (ps *pipeServer) dialog(t testing.TB, writes ...[]byte) []postern.Reply {
	client, err := ps.l.Dial()
	require.NoError(t, err)
	defer client.Close()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	replies := make(chan []postern.Reply, 1)
	go func() {
		var got []postern.Reply
		br := bufio.NewReader(client)
		for {
			r, err := postern.ParseReply(br)
			if err != nil {
				replies <- got
				return
			}
			got = append(got, r)
		}
	}()
	for _, w := range writes {
		if _, err := client.Write(w); err != nil {
			break // the server hung up; the replies say why
		}
	}
	return <-replies
}

func codes(rs []postern.Reply) string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, r.Code)
	}
	return b.String()
}

const (
	dataOpen = "EHLO client.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
	// trailer follows the data: its commands must be read as commands.
	trailer = "MAIL FROM:<c@x.test>\r\nRCPT TO:<d@y.test>\r\nBDAT 3 LAST\r\nabcQUIT\r\n"
)

// queuedID is the queue ID in a "250 2.0.0 Ok: queued as <id>" reply.
func queuedID(r postern.Reply) string {
	_, id, _ := strings.Cut(r.Error(), "queued as ")
	return id
}

// checkDataDialog checks one DATA dialog against the reference: the data
// reply, the trailer's replies, and the two messages stored.
func checkDataDialog(t testing.TB, ps *pipeServer, body []byte, split int, reject bool) {
	full := append(append([]byte(nil), body...), "\r\n.\r\n"...)
	msg, used, bare, ok := refData(full)
	require.True(t, ok)
	stream := full[:used]
	split = split % (len(stream) + 1)
	got := ps.dialog(t, []byte(dataOpen), stream[:split], stream[split:], []byte(trailer))
	dataCode := "250"
	if reject && bare {
		dataCode = "550"
	}
	require.Equal(t, "220 250 250 250 354 "+dataCode+" 250 250 250 221", codes(got),
		"stream %q: one reply to DATA, then the trailer read as commands", stream)
	if dataCode == "550" {
		expect(t, got[5], "550 5.5.2 Error: bare <")
	} else {
		stored, ok := ps.h.get(queuedID(got[5]))
		require.True(t, ok, "message of %q", got[5].Error())
		require.Equal(t, string(msg), string(stored), "stream %q", stream)
	}
	second, ok := ps.h.get(queuedID(got[8]))
	require.True(t, ok)
	require.Equal(t, "abc", string(second))
}

// reportedBodies are the inputs of the issue and the classic SMTP
// smuggling variants.
var reportedBodies = []string{
	"line\r\n.\r\r\n.\r\n" + "MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nBDAT 3 LAST\r\nxyz",
	"Subject: x\r\n\r\nline\r\n.\rX",
	"Subject: x\r\n\r\nhello\r.\rMAIL FROM:<evil@x.test>\r\n",
	"Subject: x\r\n\r\nhello\n.\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\n",
	"Subject: x\r\n\r\nhello\r\n.\nMAIL FROM:<evil@x.test>\r\n",
	"Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<evil@x.test>\r\n",
	"Subject: x\r\n\r\n..\r\n.x\r\n...\r\n. \r\n",
	"Subject: x\r\n\r\nends in CR\r",
	"",
	".",
	"\r\n.",
}

// The reported inputs over the real server: one reply per DATA, the
// commands after the end are commands, the stored text is the reference's.
func TestDataBoundaryReported(t *testing.T) {
	for _, reject := range []bool{false, true} {
		ps := newPipeServer(t, Config{BareNewline: map[bool]BareNewline{false: BareNewlineNormalize, true: BareNewlineReject}[reject]})
		for i, body := range reportedBodies {
			t.Run(fmt.Sprintf("reject=%v/%d", reject, i), func(t *testing.T) {
				checkDataDialog(t, ps, []byte(body), 0, reject)
				checkDataDialog(t, ps, []byte(body), len(body)/2+1, reject)
			})
		}
	}
}

// FuzzDataBoundary is the differential test of the DATA stream: random
// bodies through the real server and edge, and through refData, must agree
// on where the message ends, what it holds, how many replies come, and
// that the commands after it are read as commands.
func FuzzDataBoundary(f *testing.F) {
	for i, b := range reportedBodies {
		f.Add([]byte(b), uint16(i*7), i%2 == 0)
	}
	f.Add([]byte("a\r\r\n.\r\n.\r\r\n"), uint16(3), false)
	f.Add([]byte("\n.\r\n\r.\r\n.\n"), uint16(1), true)
	servers := map[bool]*pipeServer{
		false: newPipeServer(f, Config{}),
		true:  newPipeServer(f, Config{BareNewline: BareNewlineReject}),
	}
	f.Fuzz(func(t *testing.T, body []byte, split uint16, reject bool) {
		if len(body) > 8<<10 {
			body = body[:8<<10]
		}
		checkDataDialog(t, servers[reject], body, int(split), reject)
	})
}

// checkBDATDialog sends text as two BDAT chunks and checks the stored
// message against refBDAT.
func checkBDATDialog(t testing.TB, ps *pipeServer, text []byte, split int, reject bool) {
	split = split % (len(text) + 1)
	open := "EHLO client.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n"
	first := fmt.Sprintf("BDAT %d\r\n%s", split, text[:split])
	last := fmt.Sprintf("BDAT %d LAST\r\n%s", len(text)-split, text[split:])
	got := ps.dialog(t, []byte(open), []byte(first), []byte(last), []byte("QUIT\r\n"))
	msg, bare := refBDAT(text)
	final := "250"
	if reject && bare {
		final = "550"
	}
	require.Equal(t, "220 250 250 250 250 "+final+" 221", codes(got), "text %q", text)
	if final == "250" {
		stored, ok := ps.h.get(queuedID(got[5]))
		require.True(t, ok)
		require.Equal(t, string(msg), string(stored), "text %q", text)
	}
}

// FuzzBDATLineEnds: BDAT chunks get the same line-end rule as DATA, across
// chunk boundaries, and the chunk sizes stay exact.
func FuzzBDATLineEnds(f *testing.F) {
	for i, s := range []string{"a\r\nb\r\n", "a\rb\nc", "x\r", "\r\n.\r\n", ".\r.\r", "a\r\r\nb\n\r"} {
		f.Add([]byte(s), uint16(i), i%2 == 1)
	}
	servers := map[bool]*pipeServer{
		false: newPipeServer(f, Config{}),
		true:  newPipeServer(f, Config{BareNewline: BareNewlineReject}),
	}
	f.Fuzz(func(t *testing.T, text []byte, split uint16, reject bool) {
		if len(text) > 8<<10 {
			text = text[:8<<10]
		}
		checkBDATDialog(t, servers[reject], text, int(split), reject)
	})
}

func TestBDATLineEnds(t *testing.T) {
	ps := newPipeServer(t, Config{})
	// A CR at the end of one chunk and an LF at the start of the next are
	// one CRLF; a CR at the end of the message is bare.
	checkBDATDialog(t, ps, []byte("Subject: x\r\n\r\nab\r\ncd"), 15, false)
	checkBDATDialog(t, ps, []byte("a\r.\rb\nc\r"), 2, false)
	rej := newPipeServer(t, Config{BareNewline: BareNewlineReject})
	checkBDATDialog(t, rej, []byte("a\r\nb\n"), 3, true)
	checkBDATDialog(t, rej, []byte("a\r\nb\r\n"), 3, true)
}

// Under BareNewlineReject a command line ending in a bare LF is refused,
// not run; the session goes on.
func TestBareNewlineRejectCommands(t *testing.T) {
	ps := newPipeServer(t, Config{BareNewline: BareNewlineReject})
	got := ps.dialog(t, []byte("EHLO x\r\nNOOP\nMAIL FROM:<a@x.test>\n"+dataOpen[len("EHLO client.test\r\n"):]),
		[]byte("Subject: x\r\n\r\nbody\n.\r\n.\r\nQUIT\r\n"))
	require.Equal(t, "220 250 550 550 250 250 354 550 221", codes(got))
	expect(t, got[2], "550 5.5.2 Error: bare <LF> received")
	expect(t, got[7], "550 5.5.2 Error: bare <LF> received")

	// A DATA refused before its end (too large) leaves its bare LF
	// behind; a clean BDAT message after it is not refused for it.
	small := newPipeServer(t, Config{BareNewline: BareNewlineReject, MaxMessageBytes: 64})
	got = small.dialog(t, []byte(dataOpen), []byte("Subject: x\r\n\r\nbody\n"+strings.Repeat("x", 20000)+"\r\n.\r\n"+
		"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 5 LAST\r\nabc\r\nQUIT\r\n"))
	require.Equal(t, "220 250 250 250 354 552 250 250 250 221", codes(got))

	norm := newPipeServer(t, Config{})
	got = norm.dialog(t, []byte("EHLO x\r\nNOOP\nQUIT\r\n"))
	require.Equal(t, "220 250 250 221", codes(got))
}

func TestParseBareNewline(t *testing.T) {
	for in, want := range map[string]BareNewline{"": BareNewlineNormalize, "normalize": BareNewlineNormalize, "Reject": BareNewlineReject} {
		got, err := ParseBareNewline(in)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		if in != "" {
			assert.Equal(t, strings.ToLower(in), got.String())
		}
	}
	_, err := ParseBareNewline("no")
	assert.ErrorIs(t, err, ErrConfig)
	_, err = New(Config{Handoff: &memHandoff{}, BareNewline: 7})
	assert.ErrorIs(t, err, ErrConfig)
}
