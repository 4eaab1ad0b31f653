package auth

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dkimpyPython is Debian's interpreter, which sees python3-dkim; the
// python3 first on PATH may be another installation.
const dkimpyPython = "/usr/bin/python3"

// needDkimpy skips the test without dkimpy, or fails it under CI=true.
func needDkimpy(t *testing.T) {
	t.Helper()
	err := exec.Command(dkimpyPython, "-c", "import dkim, nacl").Run()
	if err == nil {
		return
	}
	msg := "dkimpy not available (apt-get install -y python3-dkim): " + err.Error()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func dkimpy(t *testing.T, req map[string]any) map[string]any {
	t.Helper()
	in, err := json.Marshal(req)
	require.NoError(t, err)
	cmd := exec.Command(dkimpyPython, "testdata/dkimpy_helper.py")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "dkimpy: %s", stderr.String())
	var resp map[string]any
	require.NoError(t, json.Unmarshal(out, &resp), string(out))
	return resp
}

func dkimpyVerify(t *testing.T, msg string, records map[string]string) bool {
	resp := dkimpy(t, map[string]any{"op": "verify", "message": base64.StdEncoding.EncodeToString([]byte(msg)),
		"records": records})
	return resp["ok"].(bool)
}

// Messages signed by Postern verify with dkimpy, and a changed body fails.
func TestDKIMInteropPosternSigns(t *testing.T) {
	needDkimpy(t)
	rsaKey, edKey := testRSAKey(), testEd25519Key(t)
	rsaTXT, err := DKIMRecord(rsaKey.Public())
	require.NoError(t, err)
	edTXT, err := DKIMRecord(edKey.Public())
	require.NoError(t, err)
	records := map[string]string{"rsa._domainkey.example.com": rsaTXT, "ed._domainkey.example.com": edTXT}
	for _, tc := range []struct {
		name   string
		key    DKIMKey
		hc, bc string
	}{
		{"rsa relaxed/relaxed", DKIMKey{"example.com", "rsa", rsaKey}, "", ""},
		{"rsa simple/simple", DKIMKey{"example.com", "rsa", rsaKey}, "simple", "simple"},
		{"ed25519 relaxed/relaxed", DKIMKey{"example.com", "ed", edKey}, "", ""},
		{"ed25519 simple/relaxed", DKIMKey{"example.com", "ed", edKey}, "simple", "relaxed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMessage(t, testMessage)
			m.AddHeader("Received", "from a.example by b.example;\r\n\tWed, 25 Nov 2026 09:00:00 +0000")
			sg, err := NewDKIMSigner(DKIMSignConfig{Keys: []DKIMKey{tc.key}, HeaderCanonicalization: tc.hc,
				BodyCanonicalization: tc.bc})
			require.NoError(t, err)
			_, err = sg.Sign(bg, m)
			require.NoError(t, err)
			signed := render(t, m)
			assert.True(t, dkimpyVerify(t, signed, records), "dkimpy rejects:\n%s", signed)
			assert.False(t, dkimpyVerify(t, strings.Replace(signed, "noon", "one", 1), records), "tampered body")
		})
	}
}

// Messages signed by dkimpy verify in Postern, and a changed body fails.
func TestDKIMInteropDkimpySigns(t *testing.T) {
	needDkimpy(t)
	s := startDNS(t)
	rsaKey, edKey := testRSAKey(), testEd25519Key(t)
	publish(t, s, "example.org", "py-rsa", rsaKey)
	publish(t, s, "example.org", "py-ed", edKey)
	rsaPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}))
	edSeed := base64.StdEncoding.EncodeToString(edKey.Seed())
	v := newVerifier(t, s, DKIMVerifyConfig{})
	msg := strings.ReplaceAll(testMessage, "example.com", "example.org")
	for _, tc := range []struct {
		name, sel, alg, key string
		canon               []string
	}{
		{"rsa relaxed/simple", "py-rsa", "rsa-sha256", rsaPEM, []string{"relaxed", "simple"}},
		{"rsa simple/simple", "py-rsa", "rsa-sha256", rsaPEM, []string{"simple", "simple"}},
		{"ed25519 relaxed/relaxed", "py-ed", "ed25519-sha256", edSeed, []string{"relaxed", "relaxed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := dkimpy(t, map[string]any{"op": "sign", "message": base64.StdEncoding.EncodeToString([]byte(msg)),
				"domain": "example.org", "selector": tc.sel, "alg": tc.alg, "key": tc.key, "canon": tc.canon})
			raw, err := base64.StdEncoding.DecodeString(resp["message"].(string))
			require.NoError(t, err)
			signed := string(raw)
			res := v.Verify(bg, newMessage(t, signed))
			require.Len(t, res, 1, signed)
			assert.Equal(t, Pass, res[0].Status, "%s\n%s", res[0].Reason, signed)
			assert.Equal(t, "example.org", res[0].Domain)
			assert.Equal(t, tc.sel, res[0].Selector)
			res = v.Verify(bg, newMessage(t, strings.Replace(signed, "noon", "one", 1)))
			require.Len(t, res, 1)
			assert.Equal(t, Fail, res[0].Status)
		})
	}
}
