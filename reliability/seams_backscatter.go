package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

func backscatterCases() []seamDef {
	const g = "Backscatter"
	return []seamDef{
		{"13a", g, "forged@victim.example from an untrusted client (nothing verified it) to nobody@example.test; the store answers 550 5.1.1 after the relay accepted (no callahead)",
			"250; the failure notice goes to the postmaster, none to the forged sender", storeRefuses(false), nil},
		{"13b", g, "as 13a, from a trusted client: alice@site.example to nobody@example.test",
			"250; the failure notice goes to the sender", storeRefuses(true), nil},
		{"13c", g, "migration example (callahead): forged@victim.example to nobody@nix.co.jj, which the store does not know",
			"550 5.1.1 at RCPT; nothing queued, no notice", callaheadRefuses, nil},
		{"O5", g, "forged@victim.example from an untrusted client, RCPT TO:<user@example.test> NOTIFY=SUCCESS,DELAY,FAILURE, to a next hop without DSN (so the relay owes the success notice)",
			"250 and delivered; no notice to the forged sender (trusted control: one \"relayed\" notice to the sender)", forgedNotifySuccess, nil},
		{"O6", g, "null sender MAIL FROM:<> from an untrusted client with NOTIFY=SUCCESS, to a next hop without DSN",
			"250 and delivered; no notice to anyone", nullNotifySuccess, nil},
	}
}

// scatterRelay routes example.test to a store that refuses nobody@ and
// victim.example and site.example to sinks of their own; 127.0.0.1 is
// trusted, postmaster@site.example the postmaster.
type scatterRelay struct {
	r                   *relayProc
	store, victim, site *sink
}

func (e *seams) scatterRelay(ctx context.Context, storeDSN bool) (*scatterRelay, error) {
	b := &scatterRelay{}
	var err error
	if storeDSN {
		b.store, err = e.s.startRecordingSink()
	} else {
		b.store, err = e.s.startRecordingSinkNoDSN()
	}
	if err != nil {
		return nil, err
	}
	unknownUsers(b.store)
	if b.victim, err = e.s.startRecordingSink(); err != nil {
		return nil, err
	}
	if b.site, err = e.s.startRecordingSink(); err != nil {
		return nil, err
	}
	dir, err := e.s.dir("seams-" + e.c.ID)
	if err != nil {
		return nil, err
	}
	mt, err := mailertable(dir, map[string]string{"example.test": b.store.addr, "victim.example": b.victim.addr, "site.example": b.site.addr})
	if err != nil {
		return nil, err
	}
	b.r, err = e.startRelayIn(ctx, dir, "-trusted", "127.0.0.1", "-mailertable", mt, "-postmaster", "postmaster@site.example",
		"-hostname", "relay.seams.test")
	return b, err
}

// unknownUsers makes a store refuse nobody@ as an unknown user.
func unknownUsers(k *sink) {
	k.refuseRcpt(func(a string) *smtp.SMTPError {
		if strings.HasPrefix(a, "nobody@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "nobody: User unknown"}
		}
		return nil
	})
}

func storeRefuses(trusted bool) func(ctx context.Context, e *seams, c *SeamCase) error {
	return func(ctx context.Context, e *seams, c *SeamCase) error {
		b, err := e.scatterRelay(ctx, true)
		if err != nil {
			return err
		}
		src, from, noticeTo := "127.0.0.2", "forged@victim.example", "postmaster@site.example"
		if trusted {
			src, from, noticeTo = "127.0.0.1", "alice@site.example", "alice@site.example"
		}
		got, err := e.sendRaw(ctx, src, b.r.addr, from, []string{"nobody@example.test"}, "Subject: backscatter\r\n\r\nhello\r\n.\r\n")
		if err != nil {
			return err
		}
		c.Reply = summary(got[1 : len(got)-1])
		c.expectCodes(got, "250 250 250 354 250 221")
		settleSink(ctx, b.site, 1, 20*time.Second, 2*time.Second)
		site, victim := deliveries(b.site), deliveries(b.victim)
		c.Delivered = "site.example: " + notices(site) + "; victim.example: " + notices(victim)
		c.require(len(victim) == 0, "the forged sender's domain got %d messages", len(victim))
		if c.require(len(site) == 1, "%d notices at site.example, want 1", len(site)) {
			c.require(len(site[0].Rcpts) == 1 && wirePath(site[0].Rcpts[0]) == "<"+noticeTo+">", "the notice went to %v, want <%s>", site[0].Rcpts, noticeTo)
			c.require(statusOf(site[0].Data) == "5.1.1", "the notice says Status: %s, want 5.1.1", statusOf(site[0].Data))
		}
		c.require(len(deliveries(b.store)) == 0, "the store took %s", envelopes(deliveries(b.store)))
		return nil
	}
}

func callaheadRefuses(ctx context.Context, e *seams, c *SeamCase) error {
	r, store, err := e.migration(ctx)
	if err != nil {
		return err
	}
	unknownUsers(store)
	if err := e.rejectedAll(ctx, c, r, "127.0.0.2", "forged@victim.example", []string{"nobody@nix.co.jj"}, "550 5.1.1 "); err != nil {
		return err
	}
	time.Sleep(time.Second)
	probes := 0
	for _, w := range store.wire() {
		probes += len(wireTxns(w))
	}
	c.Delivered = fmt.Sprintf("%s (the store was asked at RCPT: %d probe(s) without DATA)", envelopes(deliveries(store)), probes)
	c.require(len(deliveries(store)) == 0, "the store got %s", envelopes(deliveries(store)))
	c.require(probes > 0, "the store was never asked (no callahead)")
	return nil
}

// dsnDialog sends one message with DSN parameters from src and returns
// the replies after the banner.
func (e *seams) dsnDialog(ctx context.Context, src, addr, mail, rcpt string) ([]string, error) {
	t, _, err := e.dial(ctx, src, addr)
	if err != nil {
		return nil, err
	}
	got, err := t.do("EHLO client.example", "MAIL FROM:"+mail, "RCPT TO:"+rcpt, "DATA")
	if err != nil || !strings.HasPrefix(got[len(got)-1], "354") {
		return append(got, t.quit()...), err
	}
	end, err := t.do("Subject: notify\r\n\r\nhello\r\n.")
	if err != nil {
		return got, err
	}
	return append(append(got, end...), t.quit()...), nil
}

func forgedNotifySuccess(ctx context.Context, e *seams, c *SeamCase) error {
	b, err := e.scatterRelay(ctx, false)
	if err != nil {
		return err
	}
	got, err := e.dsnDialog(ctx, "127.0.0.2", b.r.addr, "<forged@victim.example> RET=HDRS ENVID=x1", "<user@example.test> NOTIFY=SUCCESS,DELAY,FAILURE")
	if err != nil {
		return err
	}
	c.Reply = summary(got[1 : len(got)-1])
	c.expectCodes(got, "250 250 250 354 250 221")
	// The trusted control: the same with a sender something vouches for.
	ctl, err := e.dsnDialog(ctx, "127.0.0.1", b.r.addr, "<alice@site.example> RET=HDRS ENVID=x2", "<user@example.test> NOTIFY=SUCCESS")
	if err != nil {
		return err
	}
	c.expectCodes(ctl, "250 250 250 354 250 221")
	settleSink(ctx, b.store, 2, 20*time.Second, 0)
	settleSink(ctx, b.site, 1, 20*time.Second, 2*time.Second)
	store, victim, site := deliveries(b.store), deliveries(b.victim), deliveries(b.site)
	c.Delivered = fmt.Sprintf("store: %d messages; victim.example: %s; control, site.example: %s", len(store), notices(victim), notices(site))
	c.require(len(store) == 2, "%d messages at the store, want 2", len(store))
	c.require(len(victim) == 0, "the forged sender's domain got %s", notices(victim))
	if c.require(len(site) == 1, "control: %d notices to the trusted sender, want 1", len(site)) {
		c.require(strings.Contains(string(site[0].Data), "Action: relayed"), "control: the notice is not a \"relayed\" notice")
		c.require(len(site[0].Rcpts) == 1 && wirePath(site[0].Rcpts[0]) == "<alice@site.example>", "control: the notice went to %v", site[0].Rcpts)
	}
	return nil
}

func nullNotifySuccess(ctx context.Context, e *seams, c *SeamCase) error {
	b, err := e.scatterRelay(ctx, false)
	if err != nil {
		return err
	}
	got, err := e.dsnDialog(ctx, "127.0.0.2", b.r.addr, "<>", "<user@example.test> NOTIFY=SUCCESS")
	if err != nil {
		return err
	}
	c.Reply = summary(got[1 : len(got)-1])
	c.expectCodes(got, "250 250 250 354 250 221")
	settleSink(ctx, b.store, 1, 20*time.Second, 2*time.Second)
	store, victim, site := deliveries(b.store), deliveries(b.victim), deliveries(b.site)
	c.Delivered = fmt.Sprintf("store: %s; notices: victim.example %d, site.example (postmaster) %d", envelopes(store), len(victim), len(site))
	c.require(len(store) == 1, "%d messages at the store, want 1", len(store))
	c.require(len(victim)+len(site) == 0, "notices went out: %s %s", notices(victim), notices(site))
	return nil
}

func attachmentCases() []seamDef {
	const g = "Attachments (-ban-attachments)"
	return []seamDef{
		{"14a", g, "a zip after 400 junk bytes, holding evil.exe", "552 5.7.0 naming evil.exe; nothing delivered", attachment("prefixed.zip", prefixedZip), nil},
		{"14b", g, "a tar.gz holding evil.exe", "552 5.7.0 naming evil.exe; nothing delivered", attachment("files.tar.gz", tarGz), nil},
		{"14c", g, "an encrypted zip (zip -P)", "552 5.7.0 (encrypted archive); nothing delivered", attachment("secret.zip", encryptedZip), nil},
		{"14d", g, "a clean zip (readme.txt)", "250; delivered", attachment("clean.zip", cleanZip), nil},
	}
}

// evilExe is the start of a Windows program (MZ, then a PE header
// offset).
var evilExe = append([]byte("MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"), make([]byte, 64)...)

func zipOf(name string, content []byte) ([]byte, error) {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.Create(name)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(content); err != nil {
		return nil, err
	}
	err = zw.Close()
	return b.Bytes(), err
}

func prefixedZip(*seams) ([]byte, error) {
	z, err := zipOf("evil.exe", evilExe)
	return append(bytes.Repeat([]byte{0x13}, 400), z...), err
}

func cleanZip(*seams) ([]byte, error) { return zipOf("readme.txt", []byte("hello\n")) }

func tarGz(*seams) ([]byte, error) {
	var t bytes.Buffer
	tw := tar.NewWriter(&t)
	if err := tw.WriteHeader(&tar.Header{Name: "evil.exe", Mode: 0o644, Size: int64(len(evilExe)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(evilExe); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	if _, err := zw.Write(t.Bytes()); err != nil {
		return nil, err
	}
	err := zw.Close()
	return z.Bytes(), err
}

// encryptedZip makes a really encrypted zip (ZipCrypto) with zip(1).
func encryptedZip(e *seams) ([]byte, error) {
	zipTool, err := lookTool("zip")
	if err != nil {
		return nil, err
	}
	dir, err := e.s.dir("zip")
	if err != nil {
		return nil, err
	}
	if _, err := writeFile(dir, "secret.doc", "the plan\n"); err != nil {
		return nil, err
	}
	cmd := exec.Command(zipTool, "-q", "-P", "hunter2", "secret.zip", "secret.doc")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("zip -P: %v: %s", err, out)
	}
	return os.ReadFile(filepath.Join(dir, "secret.zip"))
}

// attachment sends a message with the file as a base64 attachment from
// an untrusted client to a relay with -ban-attachments.
func attachment(name string, build func(*seams) ([]byte, error)) func(ctx context.Context, e *seams, c *SeamCase) error {
	return func(ctx context.Context, e *seams, c *SeamCase) error {
		file, err := build(e)
		if err != nil {
			return err
		}
		r, k, err := e.plainRelay(ctx, "-trusted", "127.0.0.1", "-ban-attachments")
		if err != nil {
			return err
		}
		msg := "From: <a@example.net>\r\nTo: <bob@example.test>\r\nSubject: " + name + "\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n" +
			"Content-Type: application/octet-stream; name=\"" + name + "\"\r\nContent-Disposition: attachment; filename=\"" + name + "\"\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + wrap76(encodeBase64(file)) + "\r\n--b--\r\n.\r\n"
		got, err := e.sendRaw(ctx, "127.0.0.2", r.addr, "a@example.net", []string{"bob@example.test"}, msg)
		if err != nil {
			return err
		}
		c.Reply = got[len(got)-2]
		clean := name == "clean.zip"
		if clean {
			c.require(strings.HasPrefix(c.Reply, "250 "), "a clean zip: %s, want 250", c.Reply)
			settleSink(ctx, k, 1, 20*time.Second, 0)
		} else {
			c.require(strings.HasPrefix(c.Reply, "552 5.7.0 "), "%s: %s, want 552 5.7.0", name, c.Reply)
			want := "evil.exe"
			if name == "secret.zip" {
				want = "encrypted"
			}
			c.require(strings.Contains(c.Reply, want), "the refusal does not say %q", want)
			settleSink(ctx, k, 0, 0, time.Second)
		}
		d := deliveries(k)
		c.Delivered = envelopes(d)
		if clean {
			c.require(len(d) == 1, "%d deliveries, want 1", len(d))
		} else {
			c.require(len(d) == 0, "delivered %s", c.Delivered)
		}
		return nil
	}
}
