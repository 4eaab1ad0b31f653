package dsn

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// python3 returns the Python interpreter, skipping the test without one
// (failing under CI=true, where it must be installed).
func python3(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"python3", "/usr/bin/python3"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("python3 is not installed, and CI=true requires the interop test (Debian package python3)")
	}
	t.Skip("python3 is not installed: skipping the interop test with Python's email package")
	return ""
}

type pyView struct {
	ContentType     string              `json:"content_type"`
	ReportType      string              `json:"report_type"`
	Subject         string              `json:"subject"`
	AutoSubmitted   string              `json:"auto_submitted"`
	Parts           []string            `json:"parts"`
	PerMessage      map[string]string   `json:"per_message"`
	Recipients      []map[string]string `json:"recipients"`
	ReturnedSubject *string             `json:"returned_subject"`
	Defects         []string            `json:"defects"`
	Text            string              `json:"text"`
}

func pythonView(t *testing.T, py string, dsn []byte) pyView {
	t.Helper()
	cmd := exec.Command(py, "testdata/interop.py")
	cmd.Stdin = bytes.NewReader(dsn)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "python: %s", stderr.String())
	var v pyView
	require.NoError(t, json.Unmarshal(out, &v), string(out))
	return v
}

// TestPythonInterop has Python's standard email package read our DSNs:
// it must see a multipart/report with a message/delivery-status part and
// the fields we wrote, and note no defect.
func TestPythonInterop(t *testing.T) {
	py := python3(t)

	t.Run("failed", func(t *testing.T) {
		var buf bytes.Buffer
		_, err := newComposer(t, nil).Compose(&buf, failedReport())
		require.NoError(t, err)
		v := pythonView(t, py, buf.Bytes())
		assert.Empty(t, v.Defects)
		assert.Equal(t, "multipart/report", v.ContentType)
		assert.Equal(t, "delivery-status", v.ReportType)
		assert.Equal(t, SubjectFailed, v.Subject)
		assert.Equal(t, "auto-replied", v.AutoSubmitted)
		assert.Equal(t, []string{"text/plain", "message/delivery-status", "message/rfc822"}, v.Parts)
		assert.Equal(t, "dns; mx.example.org", v.PerMessage["Reporting-MTA"])
		assert.Equal(t, "QQ314159", v.PerMessage["Original-Envelope-Id"])
		require.Len(t, v.Recipients, 1)
		r := v.Recipients[0]
		assert.Equal(t, "failed", r["Action"])
		assert.Regexp(t, `^5\.\d{1,3}\.\d{1,3}$`, r["Status"])
		assert.Equal(t, "rfc822; bob@example.net", r["Final-Recipient"])
		assert.Equal(t, "rfc822; Bob@Example.NET", r["Original-Recipient"])
		assert.Equal(t, "dns; mx1.example.net", r["Remote-MTA"])
		assert.Equal(t, "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in local recipient table", r["Diagnostic-Code"])
		require.NotNil(t, v.ReturnedSubject)
		assert.Equal(t, "Lunch on Thursday?", *v.ReturnedSubject)
		assert.Contains(t, v.Text, "Could not be delivered:")
	})

	t.Run("golden files", func(t *testing.T) {
		for _, tc := range goldenCases() {
			if tc.info.Global {
				continue // Python's email package knows nothing of RFC 6533
			}
			var buf bytes.Buffer
			r := tc.report()
			_, err := newComposer(t, tc.config).Compose(&buf, r)
			require.NoError(t, err)
			v := pythonView(t, py, buf.Bytes())
			assert.Empty(t, v.Defects, tc.name)
			assert.Equal(t, "multipart/report", v.ContentType, tc.name)
			require.Len(t, v.Recipients, len(r.Recipients), tc.name)
			for i, rs := range r.Recipients {
				assert.Equal(t, string(rs.Action), v.Recipients[i]["Action"], tc.name)
				assert.Equal(t, "rfc822; "+rs.FinalRecipient, v.Recipients[i]["Final-Recipient"], tc.name)
				assert.Equal(t, rs.status().String(), v.Recipients[i]["Status"], tc.name)
			}
		}
	})
}
