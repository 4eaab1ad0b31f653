package auth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Cheap hashes for tests: the parameters come from the hash itself.
func cheapArgon2(t testing.TB, password string) string {
	salt := []byte("saltsalt12345678")
	key := argon2.IDKey([]byte(password), salt, 1, 64, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(key))
}

func cheapBcrypt(t testing.TB, password, prefix string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	require.NoError(t, err)
	return prefix + string(h[4:])
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, path)) // atomic, as an admin's tool would do
}

func TestHashPassword(t *testing.T) {
	for _, alg := range []string{"", HashArgon2id, HashBcrypt} {
		h, err := HashPassword(alg, "correct horse")
		require.NoError(t, err, alg)
		ph, err := parsePasswordHash(h)
		require.NoError(t, err, h)
		assert.True(t, ph.verify("correct horse"), alg)
		assert.False(t, ph.verify("correct horsE"), alg)
		if alg == HashBcrypt {
			assert.True(t, strings.HasPrefix(h, "$2a$12$"), h)
		} else {
			assert.True(t, strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=4$"), h)
		}
	}
	_, err := HashPassword("md5", "x")
	assert.ErrorIs(t, err, ErrPasswordHash)
	_, err = HashPassword("", "")
	assert.ErrorIs(t, err, ErrPasswordHash)
	_, err = HashPassword(HashBcrypt, strings.Repeat("x", 73))
	assert.ErrorIs(t, err, ErrPasswordHash, "bcrypt stops at 72 bytes")
}

func TestPasswordHashes(t *testing.T) {
	for _, h := range []string{
		cheapArgon2(t, "secret"),
		cheapBcrypt(t, "secret", "$2a$"),
		cheapBcrypt(t, "secret", "$2b$"),
		cheapBcrypt(t, "secret", "$2y$"),
	} {
		ph, err := parsePasswordHash(h)
		require.NoError(t, err, h)
		assert.True(t, ph.verify("secret"), h)
		assert.False(t, ph.verify("Secret"), h)
		assert.False(t, ph.verify(""), h)
	}
	good := cheapArgon2(t, "x")
	for _, bad := range []string{
		"", "secret", "$1$abc$def", "$2a$04$short", "$2x$" + cheapBcrypt(t, "s", "$2a$")[4:],
		"$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		strings.Replace(good, "v=19", "v=16", 1),
		strings.Replace(good, "m=64,t=1,p=1", "m=64,t=1", 1),
		strings.Replace(good, "m=64,t=1,p=1", "m=64,t=1,p=1,x=2", 1),
		strings.Replace(good, "m=64,t=1,p=1", "m=64,m=64,t=1", 1),
		strings.Replace(good, "m=64,t=1,p=1", "m=4194304,t=1,p=1", 1),
		strings.Replace(good, "m=64,t=1,p=1", "m=64,t=1000,p=1", 1),
		strings.Replace(good, "m=64,t=1,p=1", "m=64,t=0,p=1", 1),
		strings.Replace(good, "m=64,t=1,p=1", "m=64,t=1,p=300", 1),
		strings.Replace(good, "m=64,t=1,p=1", "m=7,t=1,p=1", 1),
		strings.Replace(good, "c2FsdHNhbHQxMjM0NTY3OA", "!!", 1),
		good + "$extra",
	} {
		_, err := parsePasswordHash(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	writeFile(t, path, "# submission users\n\n"+
		"alice:"+cheapArgon2(t, "alice-pw")+"\n"+
		"  bob@example.com : "+cheapBcrypt(t, "bob-pw", "$2y$")+"  \n")
	lb := &logBuf{newLogBuffer()}
	c, err := NewCredentials(CredentialsConfig{Path: path, Logger: lb.Logger()})
	require.NoError(t, err)
	assert.Equal(t, 2, c.Len())
	conn := newConn("192.0.2.1")
	assert.NoError(t, c.CheckPassword(bg, conn, "alice", "alice-pw"))
	assert.NoError(t, c.CheckPassword(bg, conn, "bob@example.com", "bob-pw"))
	wrong := c.CheckPassword(bg, conn, "alice", "bob-pw")
	unknown := c.CheckPassword(bg, conn, "carol", "alice-pw")
	assert.ErrorIs(t, wrong, ErrBadCredentials)
	assert.ErrorIs(t, unknown, ErrBadCredentials)
	assert.Equal(t, wrong.Error(), unknown.Error(), "an unknown user looks like a wrong password")
	assert.ErrorIs(t, c.CheckPassword(bg, conn, "Alice", "alice-pw"), ErrBadCredentials, "names are exact")
	assert.ErrorIs(t, c.CheckPassword(bg, nil, "alice", ""), ErrBadCredentials)
	recs := lb.Records(t, "auth: password check failed")
	require.Len(t, recs, 3)
	assert.Equal(t, "unknown user", recs[1]["reason"])
	assert.Equal(t, "c1", recs[1]["conn_id"])

	aliceV, ok := c.Version("alice")
	require.True(t, ok)
	bobV, ok := c.Version("bob@example.com")
	require.True(t, ok)
	assert.NotEqual(t, aliceV, bobV)
	_, ok = c.Version("carol")
	assert.False(t, ok)

	// Reload: the new table replaces the old as a whole.
	bobLine := "bob@example.com:" + cheapBcrypt(t, "bob-pw", "$2y$") + "\n"
	writeFile(t, path, "carol:"+cheapArgon2(t, "carol-pw")+"\n"+bobLine)
	require.NoError(t, c.Reload())
	assert.NoError(t, c.CheckPassword(bg, conn, "carol", "carol-pw"))
	assert.ErrorIs(t, c.CheckPassword(bg, conn, "alice", "alice-pw"), ErrBadCredentials)
	_, ok = c.Version("alice")
	assert.False(t, ok, "a removed user has no version")
	v, _ := c.Version("bob@example.com")
	assert.NotEqual(t, bobV, v, "a new hash (same password, new salt) is a new version")

	// A broken file is refused with its line; the old table stays.
	writeFile(t, path, "dave:"+cheapArgon2(t, "d")+"\nerin $2a$broken\n")
	err = c.Reload()
	require.ErrorIs(t, err, ErrCredentialsFile)
	assert.Contains(t, err.Error(), path+":2:")
	assert.NoError(t, c.CheckPassword(bg, conn, "carol", "carol-pw"))

	// A removed file too; the error names it once.
	require.NoError(t, os.Remove(path))
	err = c.Reload()
	assert.ErrorIs(t, err, ErrCredentialsFile)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Equal(t, 1, strings.Count(err.Error(), path), err.Error())
	assert.NoError(t, c.CheckPassword(bg, conn, "carol", "carol-pw"))
	_, err = NewCredentials(CredentialsConfig{Path: path})
	assert.ErrorIs(t, err, ErrCredentialsFile)
	_, err = NewCredentials(CredentialsConfig{})
	assert.ErrorIs(t, err, ErrConfig)
}

func TestCredentialsParseErrors(t *testing.T) {
	h := cheapArgon2(t, "x")
	for _, tc := range []struct {
		content string
		line    int
		msg     string
	}{
		{"alice " + h + "\n", 1, "want user:hash"},
		{"# c\n:" + h + "\n", 2, "empty user"},
		{"a b:" + h + "\n", 1, "white space"},
		{"alice:" + h + "\n\nalice:" + h + "\n", 3, "already defined on line 1"},
		{"alice:plaintext\n", 1, "not a bcrypt"},
		{"alice:\n", 1, "not a bcrypt"},
		{"alice:" + strings.Replace(h, "t=1", "t=999", 1) + "\n", 1, "t=999"},
		{"alice:" + strings.Repeat("x", 5000) + "\n", 1, "longer than"},
	} {
		_, err := parseCredentials(strings.NewReader(tc.content), "users.txt")
		require.ErrorIs(t, err, ErrCredentialsFile, tc.content)
		assert.Contains(t, err.Error(), fmt.Sprintf("users.txt:%d: ", tc.line), tc.content)
		assert.Contains(t, err.Error(), tc.msg)
		assert.NotContains(t, err.Error(), "$argon2id$", "hashes stay out of errors")
	}
	tbl, err := parseCredentials(strings.NewReader(""), "empty")
	require.NoError(t, err)
	assert.Empty(t, tbl.users)
}
