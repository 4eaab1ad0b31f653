package main

import (
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var updateReference = flag.Bool("update-reference", false, "rewrite the key tables of docs/configuration.md from keys.go")

// referencePath is the configuration reference, whose key tables keys.go
// writes.
const referencePath = "../../docs/configuration.md"

var referenceTableRE = regexp.MustCompile("(?s)(<!-- keys: ([a-z_]*) -->\n)(.*?)(<!-- /keys -->)")

// TestConfigReference: the key tables of docs/configuration.md are those
// keys.go declares (go test -run TestConfigReference -update-reference
// writes them), and every section of keys has its table.
func TestConfigReference(t *testing.T) {
	b, err := os.ReadFile(referencePath)
	require.NoError(t, err)
	doc := string(b)
	seen := map[string]bool{}
	out := referenceTableRE.ReplaceAllStringFunc(doc, func(m string) string {
		sm := referenceTableRE.FindStringSubmatch(m)
		seen[sm[2]] = true
		if sm[2] == "renamed" {
			return sm[1] + renamedTable() + sm[4]
		}
		return sm[1] + referenceTable(sm[2]) + sm[4]
	})
	assert.True(t, seen["renamed"], "docs/configuration.md has no <!-- keys: renamed --> table")
	for _, s := range referenceSections() {
		assert.True(t, seen[s], "docs/configuration.md has no <!-- keys: %s --> table", s)
	}
	if *updateReference {
		require.NoError(t, os.WriteFile(referencePath, []byte(out), 0o644))
		return
	}
	if out != doc {
		t.Errorf("docs/configuration.md's key tables differ from keys.go: go test -run TestConfigReference -update-reference")
	}
}

// TestSettings: every key of Config is declared once, with a field of a
// type the flags can take.
func TestSettings(t *testing.T) {
	seen := map[string]bool{}
	var c Config
	for _, st := range keyedSettings() {
		require.NotEmpty(t, st.key, "a setting whose field is not a key of Config")
		assert.False(t, seen[st.key], "%s is declared twice", st.key)
		seen[st.key] = true
		if st.field != nil && st.flag != "" {
			assert.NotPanics(t, func() { flagValue(st.field(&c)) }, st.key)
		}
		if st.def != "" {
			assert.NoError(t, decodeValue(st.def, st.field(&Config{})), "default of %s", st.key)
		}
		assert.False(t, strings.HasSuffix(st.doc, "*restart*"), "%s: restart is a field, not text", st.key)
	}
	for _, k := range configKeys() {
		if strings.HasPrefix(k, "dkim.") {
			continue // the [[dkim]] table is declared as "dkim"
		}
		assert.True(t, seen[k], "key %s of Config has no setting in keys.go", k)
	}
}
