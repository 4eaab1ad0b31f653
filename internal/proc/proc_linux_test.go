package proc

import (
	"os/exec"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRaiseFileLimit(t *testing.T) {
	n, err := RaiseFileLimit()
	require.NoError(t, err)
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	assert.Equal(t, lim.Max, n)
	assert.Equal(t, lim.Max, lim.Cur)
}

func TestDieWithParent(t *testing.T) {
	cmd := exec.Command("true")
	DieWithParent(cmd)
	require.NotNil(t, cmd.SysProcAttr)
	assert.Equal(t, syscall.SIGKILL, cmd.SysProcAttr.Pdeathsig)
}
