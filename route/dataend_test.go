package route

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dataRecorder is a raw next hop that keeps the exact bytes of each DATA,
// up to and including the final CRLF "." CRLF.
func dataRecorder(t *testing.T) (string, chan []byte) {
	got := make(chan []byte, 4)
	addr, _ := rawServer(t, "127.0.0.1:0", func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "220 raw.test ESMTP\r\n")
		for {
			line, err := readLine(c)
			if err != nil {
				return
			}
			switch strings.ToUpper(line) {
			case "DATA":
				io.WriteString(c, "354 go on\r\n")
				var data []byte
				buf := make([]byte, 1)
				for !bytes.HasSuffix(data, []byte("\r\n.\r\n")) && !bytes.Equal(data, []byte(".\r\n")) {
					if _, err := c.Read(buf); err != nil {
						return
					}
					data = append(data, buf[0])
				}
				got <- data
				io.WriteString(c, "250 2.0.0 kept\r\n")
			case "QUIT":
				io.WriteString(c, "221 bye\r\n")
				return
			default:
				if strings.HasPrefix(strings.ToUpper(line), "EHLO") {
					io.WriteString(c, "250-raw.test\r\n250 8BITMIME\r\n")
				} else {
					io.WriteString(c, "250 ok\r\n")
				}
			}
		}
	})
	return addr, got
}

// A stored message is sent so that no next hop, not even one that reads a
// bare CR or LF as a line end, finds an end of data before the real one:
// a stored line "." or ".\r" is stuffed, and no bare CR or LF goes out.
func TestDeliverNeverEndsDataEarly(t *testing.T) {
	addr, got := dataRecorder(t)
	tr := mtTransport(t, "example.net esmtp:"+hostPort(addr)+"\n", TransportConfig{})
	for _, stored := range []string{
		"Subject: a\r\n\r\nx\r\n.\r\ny\r\n",   // a line "."
		"Subject: a\r\n\r\nx\r\n.\ry\r\n",     // ".\r" content
		"Subject: a\r\n\r\nx\r.\r\ny\r\n",     // bare CR before "."
		"Subject: a\r\n\r\nx\n.\ny\n",         // bare LF around "."
		"Subject: a\r\n\r\nx\r\n.\r",          // ends in ".\r"
		"Subject: a\r\n\r\nx\r\n.",            // ends in "."
		"Subject: a\r\n\r\nx\r\r\n.\r\r\n.\r", // the reported stream, stored raw
	} {
		d := delivery("a@sender.test", "b@example.net")
		d.Message, d.Size = strings.NewReader(stored), int64(len(stored))
		res := tr.Deliver(bg, d)
		require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
		var data []byte
		select {
		case data = <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("%q: no DATA recorded", stored)
		}
		// Every CR starts CRLF, every LF ends one.
		for i, c := range data {
			switch c {
			case '\r':
				require.True(t, i+1 < len(data) && data[i+1] == '\n', "%q sent as %q: bare CR at %d", stored, data, i)
			case '\n':
				require.True(t, i > 0 && data[i-1] == '\r', "%q sent as %q: bare LF at %d", stored, data, i)
			}
		}
		end := bytes.Index(append([]byte("\r\n"), data...), []byte("\r\n.\r\n"))
		assert.Equal(t, len(data)-3, end, "%q sent as %q: the first end of data is the last line", stored, data)
	}
}

// FuzzBareCRWriter: however the message is cut into writes, each bare CR
// becomes CRLF and nothing else changes (a CR at the very end is left for
// the DATA writer's Close).
func FuzzBareCRWriter(f *testing.F) {
	f.Add([]byte("a\r.\r\nb\rc\r"), uint8(2))
	f.Add([]byte("\r\r\n\r"), uint8(1))
	f.Fuzz(func(t *testing.T, p []byte, cut uint8) {
		var want []byte
		for i, c := range p {
			want = append(want, c)
			if c == '\r' && i+1 < len(p) && p[i+1] != '\n' {
				want = append(want, '\n')
			}
		}
		var out bytes.Buffer
		w := &bareCRWriter{w: &out}
		k := int(cut) % (len(p) + 1)
		for _, part := range [][]byte{p[:k], nil, p[k:]} {
			n, err := w.Write(part)
			require.NoError(t, err)
			require.Equal(t, len(part), n)
		}
		require.Equal(t, string(want), out.String())
	})
}
