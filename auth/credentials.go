package auth

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/filewatch"
)

// Password hash algorithms for HashPassword.
const (
	HashArgon2id = "argon2id"
	HashBcrypt   = "bcrypt"
)

// Parameters of new hashes. Argon2id follows the second recommendation of
// RFC 9106 §4 (64 MiB, 3 passes, 4 lanes).
const (
	argon2Memory  = 64 << 10 // KiB
	argon2Time    = 3
	argon2Threads = 4
	argon2KeyLen  = 32
	argon2SaltLen = 16
	bcryptCost    = 12
)

// Bounds on hashes read from a credentials file, so a mistaken line cannot
// make every login take minutes or gigabytes.
const (
	maxArgon2Memory = 1 << 20 // KiB: 1 GiB
	maxArgon2Time   = 100
	maxCredLine     = 4 << 10
)

// HashPassword hashes password for a credentials file line
// ("user:" + hash). alg is HashArgon2id (the default, also for "") or
// HashBcrypt; argon2id hashes are PHC strings
// ($argon2id$v=19$m=65536,t=3,p=4$salt$hash), bcrypt hashes use cost 12.
func HashPassword(alg, password string) (string, error) {
	if password == "" {
		return "", fmt.Errorf("%w: empty password", ErrPasswordHash)
	}
	switch alg {
	case "", HashArgon2id:
		salt := make([]byte, argon2SaltLen)
		if _, err := rand.Read(salt); err != nil {
			return "", fmt.Errorf("%w: %w", ErrPasswordHash, err)
		}
		key := argon2.IDKey([]byte(password), salt, argon2Time, argon2Memory, argon2Threads, argon2KeyLen)
		return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argon2Memory, argon2Time, argon2Threads,
			b64.EncodeToString(salt), b64.EncodeToString(key)), nil
	case HashBcrypt:
		h, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrPasswordHash, err)
		}
		return string(h), nil
	}
	return "", fmt.Errorf("%w: unknown algorithm %q (want argon2id or bcrypt)", ErrPasswordHash, alg)
}

// b64 is the PHC string format's Base64: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

// passwordHash is one parsed hash.
type passwordHash struct {
	// version identifies the hash text (see Credentials.Version).
	version string
	bcrypt  []byte // a bcrypt hash, or nil for argon2id
	// argon2id
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

// parsePasswordHash accepts bcrypt ($2a$, $2b$, $2y$) and argon2id PHC
// strings.
func parsePasswordHash(s string) (passwordHash, error) {
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil || len(s) != 60 {
			return passwordHash{}, errors.New("malformed bcrypt hash")
		}
		return passwordHash{bcrypt: []byte(s)}, nil
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case strings.HasPrefix(s, "$argon2i$"), strings.HasPrefix(s, "$argon2d$"):
		return passwordHash{}, errors.New("only argon2id is supported, not argon2i or argon2d")
	}
	return passwordHash{}, errors.New("not a bcrypt ($2a$, $2b$, $2y$) or argon2id hash")
}

// parseArgon2id reads $argon2id$v=19$m=...,t=...,p=...$salt$hash.
func parseArgon2id(s string) (passwordHash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return passwordHash{}, errors.New("malformed argon2id hash: want $argon2id$v=19$m=..,t=..,p=..$salt$hash")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return passwordHash{}, fmt.Errorf("argon2id version %q (want v=%d)", parts[2], argon2.Version)
	}
	var h passwordHash
	seen := map[string]bool{}
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || seen[k] {
			return passwordHash{}, fmt.Errorf("bad argon2id parameter %q", kv)
		}
		seen[k] = true
		switch k {
		case "m":
			h.memory = uint32(n)
		case "t":
			h.time = uint32(n)
		case "p":
			if n > 255 {
				return passwordHash{}, fmt.Errorf("argon2id parallelism %d over 255", n)
			}
			h.threads = uint8(n)
		default:
			return passwordHash{}, fmt.Errorf("unknown argon2id parameter %q", k)
		}
	}
	switch {
	case !seen["m"] || !seen["t"] || !seen["p"]:
		return passwordHash{}, errors.New("argon2id hash needs m, t and p")
	case h.threads == 0 || h.time == 0:
		return passwordHash{}, errors.New("argon2id t and p must be at least 1")
	case h.time > maxArgon2Time:
		return passwordHash{}, fmt.Errorf("argon2id t=%d over %d", h.time, maxArgon2Time)
	case h.memory < 8*uint32(h.threads):
		return passwordHash{}, errors.New("argon2id m must be at least 8*p KiB")
	case h.memory > maxArgon2Memory:
		return passwordHash{}, fmt.Errorf("argon2id m=%d KiB over %d", h.memory, maxArgon2Memory)
	}
	var err error
	if h.salt, err = b64.DecodeString(strings.TrimRight(parts[4], "=")); err != nil || len(h.salt) < 8 {
		return passwordHash{}, errors.New("argon2id salt must be Base64 of at least 8 bytes")
	}
	if h.key, err = b64.DecodeString(strings.TrimRight(parts[5], "=")); err != nil || len(h.key) < 16 || len(h.key) > 1024 {
		return passwordHash{}, errors.New("argon2id hash must be Base64 of 16 to 1024 bytes")
	}
	return h, nil
}

// verify reports whether password matches.
func (h *passwordHash) verify(password string) bool {
	if h.bcrypt != nil {
		return bcrypt.CompareHashAndPassword(h.bcrypt, []byte(password)) == nil
	}
	key := argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1
}

// credTable is one version of a credentials file.
type credTable struct {
	users map[string]*passwordHash
	// decoy is hashed for unknown users, so their answer takes as long as
	// a wrong password does.
	decoy *passwordHash
}

// parseCredentials reads "user:hash" lines; '#' starts a comment line.
func parseCredentials(r io.Reader, name string) (*credTable, error) {
	t := &credTable{users: make(map[string]*passwordHash)}
	firstLine := make(map[string]int)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxCredLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		user, hash = strings.TrimSpace(user), strings.TrimSpace(hash)
		switch {
		case !ok:
			return nil, lineError(ErrCredentialsFile, name, n, "want user:hash")
		case user == "":
			return nil, lineError(ErrCredentialsFile, name, n, "empty user name")
		case strings.IndexFunc(user, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			return nil, lineError(ErrCredentialsFile, name, n, "user name %q contains white space or control characters", user)
		case firstLine[user] > 0:
			return nil, lineError(ErrCredentialsFile, name, n, "user %q already defined on line %d", user, firstLine[user])
		}
		h, err := parsePasswordHash(hash)
		if err != nil {
			return nil, lineError(ErrCredentialsFile, name, n, "user %q: %v", user, err)
		}
		sum := sha256.Sum256([]byte(hash))
		h.version = hex.EncodeToString(sum[:16])
		firstLine[user] = n
		t.users[user] = &h
		if t.decoy == nil {
			t.decoy = &h
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, lineError(ErrCredentialsFile, name, n+1, "line longer than %d bytes", maxCredLine)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrCredentialsFile, name, err)
	}
	return t, nil
}

// CredentialsConfig configures Credentials.
type CredentialsConfig struct {
	// Path is the credentials file. Required. Each line is "user:hash"
	// with a bcrypt ($2a$, $2b$, $2y$) or argon2id PHC hash (see
	// HashPassword); blank lines and lines starting with '#' are skipped.
	// User names are compared exactly and cannot contain ':' or white
	// space.
	Path string
	// Interval between looks at the file under Run; 0 means
	// DefaultWatchInterval.
	Interval time.Duration
	// Logger receives failed checks (Debug), loads (Info) and files that
	// could not be loaded (Error, once per broken content); nil discards.
	Logger *slog.Logger
}

// Credentials checks SMTP AUTH passwords against a credentials file. It
// satisfies smtpserver.PasswordChecker. Reload and Run replace the table
// atomically; checks in flight keep the table they started with. It is
// safe for concurrent use.
type Credentials struct {
	fw  *filewatch.Watcher[*credTable]
	log *slog.Logger
}

// NewCredentials loads cfg.Path and returns the store. Errors name the
// file and line.
func NewCredentials(cfg CredentialsConfig) (*Credentials, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("%w: credentials need a Path", ErrConfig)
	}
	c := &Credentials{log: orDiscard(cfg.Logger)}
	var err error
	c.fw, err = watchFile(cfg.Path, "credentials", ErrCredentialsFile, cfg.Interval, cfg.Logger, parseCredentials,
		func(t *credTable) int { return len(t.users) })
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the file now, changed or not (for SIGHUP). On error the
// old table stays in use.
func (c *Credentials) Reload() error { return fileErr(ErrCredentialsFile, c.fw.Reload()) }

// Run looks at the file every Interval until ctx is done and returns
// ctx.Err(). A change is loaded once the file has stayed the same for
// one more look (so a file being written is not read half done); a file
// that does not parse is logged once and the old table kept until the
// file changes again.
func (c *Credentials) Run(ctx context.Context) error { return c.fw.Run(ctx) }

func (c *Credentials) table() *credTable { return c.fw.Current() }

// Len returns the number of users.
func (c *Credentials) Len() int { return len(c.table().users) }

// Version returns a short token that identifies user's current password
// hash, and false when the credentials in force have no such user. It
// changes whenever the user's line is given a new hash, so a holder of
// something granted at login (a web session) can tell that the password
// was changed or the user removed since. It is not secret and reveals
// nothing of the hash.
func (c *Credentials) Version(user string) (string, bool) {
	h, ok := c.table().users[user]
	if !ok {
		return "", false
	}
	return h.version, true
}

// CheckPassword returns nil when password is user's, else
// ErrBadCredentials. An unknown user costs one hash as a known one does,
// so the time taken does not tell which names exist.
func (c *Credentials) CheckPassword(ctx context.Context, conn *postern.Conn, user, password string) error {
	t := c.table()
	h, known := t.users[user]
	if !known {
		if t.decoy != nil {
			t.decoy.verify(password) // result ignored: only the time matters
		}
	} else if h.verify(password) {
		return nil
	}
	if conn != nil && c.log.Enabled(ctx, slog.LevelDebug) {
		why := "wrong password"
		if !known {
			why = "unknown user"
		}
		c.log.LogAttrs(ctx, slog.LevelDebug, "auth: password check failed", slog.String("conn_id", conn.ID),
			slog.String("remote_ip", conn.RemoteAddr().String()), slog.String("user", user), slog.String("reason", why))
	}
	return ErrBadCredentials
}
