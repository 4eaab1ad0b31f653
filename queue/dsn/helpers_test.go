package dsn

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var (
	arrival  = time.Date(2026, 11, 25, 8, 30, 5, 0, time.UTC)
	attempt  = time.Date(2026, 11, 25, 8, 59, 58, 0, time.UTC)
	dsnDate  = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	giveUpAt = time.Date(2026, 11, 30, 8, 30, 5, 0, time.UTC)
)

// testConfig is a deterministic Config: fixed clock, Message-ID and
// boundary.
func testConfig() Config {
	return Config{
		ReportingMTA: "mx.example.org",
		Now:          func() time.Time { return dsnDate },
		MessageID:    func() string { return "dsn-20261125090000-1@mx.example.org" },
		Boundary:     func() string { return "=_dsn_7f3a9c" },
	}
}

func newComposer(t testing.TB, mod func(*Config)) *Composer {
	t.Helper()
	cfg := testConfig()
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	require.NoError(t, err)
	return c
}

// lunch is an ordinary message, LF line ends in the source, CRLF on the
// wire.
var lunch = crlf(`Received: from client.example.com (client.example.com [192.0.2.10])
	by mx.example.org with ESMTPS id 4XyZ1 for <bob@example.net>;
	Wed, 25 Nov 2026 08:30:05 +0000
From: Alice Example <alice@example.com>
To: Bob Example <bob@example.net>
Subject: Lunch on Thursday?
Date: Wed, 25 Nov 2026 08:30:00 +0000
Message-ID: <lunch.42@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hi Bob,

are you free for lunch on Thursday? The new place on the corner
opened last week.

Alice
`)

// utf8Message is an SMTPUTF8 message (RFC 6532 header).
var utf8Message = crlf(`From: Jürgen Müller <jürgen@bücher.example>
To: 山田太郎 <山田@例え.jp>
Subject: Grüße aus Köln
Date: Wed, 25 Nov 2026 08:30:00 +0000
Message-ID: <grüße.7@bücher.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Hallo Tarō, viele Grüße!
`)

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func reply(code int, esc postern.EnhancedCode, lines ...string) postern.Reply {
	return postern.Reply{Code: code, Enhanced: esc, Lines: lines}
}

// withMessage sets the original message of r.
func withMessage(r *Report, msg []byte) *Report {
	r.Message, r.Size = bytes.NewReader(msg), int64(len(msg))
	return r
}

func failedReport() *Report {
	return withMessage(&Report{
		Sender:      "alice@example.com",
		EnvID:       "QQ314159",
		ArrivalDate: arrival,
		QueueID:     "4XyZ1",
		Recipients: []RecipientStatus{{
			FinalRecipient:    "bob@example.net",
			OriginalType:      "RFC822",
			OriginalRecipient: "Bob@Example.NET",
			Action:            Failed,
			RemoteMTA:         "mx1.example.net",
			Reply:             reply(550, postern.ESC(5, 1, 1), "<bob@example.net>: Recipient address rejected: User unknown in local recipient table"),
			LastAttemptDate:   attempt,
		}},
	}, lunch)
}
