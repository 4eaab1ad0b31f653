package archtest

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/postern/postern"

type pkg struct {
	ImportPath string
	Dir        string
	Standard   bool
	GoFiles    []string
	Imports    []string
	Deps       []string
	Module     *struct {
		Path string
	}
	Error *struct {
		Err string
	}
}

// listing is `go list -deps` of the library module: its own packages and
// everything they import, standard library included.
type listing struct {
	pkgs map[string]*pkg
	// own are the module's packages, sorted by import path.
	own []*pkg
}

// goList lists the library module alone (GOWORK=off: the relay's module
// and its requirements are not part of what a user of the library gets).
// args go before the pattern (-overlay).
func goList(t *testing.T, args ...string) listing {
	t.Helper()
	cmdArgs := append([]string{"list", "-deps", "-json"}, args...)
	cmd := exec.Command("go", append(cmdArgs, module+"/...")...)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	l := listing{pkgs: map[string]*pkg{}}
	dec := json.NewDecoder(out)
	for {
		p := &pkg{}
		err := dec.Decode(p)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		require.Nil(t, p.Error, "go list: %s", p.ImportPath)
		l.pkgs[p.ImportPath] = p
		if p.Module != nil && p.Module.Path == module {
			l.own = append(l.own, p)
		}
	}
	require.NoError(t, cmd.Wait(), stderr.String())
	require.NotEmpty(t, l.own)
	slices.SortFunc(l.own, func(a, b *pkg) int { return strings.Compare(a.ImportPath, b.ImportPath) })
	return l
}

func isStdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func rel(path string) string {
	if path == module {
		return "."
	}
	return strings.TrimPrefix(path, module+"/")
}

func under(r, dir string) bool { return r == dir || strings.HasPrefix(r, dir+"/") }
