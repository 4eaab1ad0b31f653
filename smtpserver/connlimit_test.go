package smtpserver

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Recipients over the limit get 452 4.5.3 and do not count as errors up to
// the overshoot limit, so a long list does not end the session; past it
// they do.
func TestRecipientOvershoot(t *testing.T) {
	for _, tt := range []struct {
		name      string
		overshoot int
		rcpts     int
		want      string // reply codes after MAIL
	}{
		{"within the overshoot limit", 0, 30, "250 250" + strings.Repeat(" 452", 28) + " 354 250 221"},
		{"past the overshoot limit", 3, 10, "250 250" + strings.Repeat(" 452", 8) + " 421"},
		{"every one counted", -1, 8, "250 250 452 452 452 452 452 421"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ps := newPipeServer(t, Config{MaxRecipients: 2, RecipientOvershootLimit: tt.overshoot, SoftErrorLimit: 2, HardErrorLimit: 5})
			var b strings.Builder
			b.WriteString("EHLO x\r\nMAIL FROM:<a@x.test>\r\n")
			for i := range tt.rcpts {
				fmt.Fprintf(&b, "RCPT TO:<r%d@y.test>\r\n", i)
			}
			got := ps.dialog(t, []byte(b.String()), []byte("DATA\r\n"), []byte("Subject: x\r\n\r\nx\r\n.\r\nQUIT\r\n"))
			require.Greater(t, len(got), 3)
			assert.Equal(t, tt.want, codes(got[3:]))
			for _, r := range got[3:] {
				if r.Code == 452 {
					expect(t, r, "452 4.5.3")
				}
			}
		})
	}
	t.Run("reset by the next transaction", func(t *testing.T) {
		ps := newPipeServer(t, Config{MaxRecipients: 1, RecipientOvershootLimit: 2, SoftErrorLimit: 3, HardErrorLimit: 3})
		txn := "MAIL FROM:<a@x.test>\r\nRCPT TO:<1@y.test>\r\nRCPT TO:<2@y.test>\r\nRCPT TO:<3@y.test>\r\nRSET\r\n"
		got := ps.dialog(t, []byte("EHLO x\r\n"+strings.Repeat(txn, 5)+"QUIT\r\n"))
		assert.Equal(t, "220 250"+strings.Repeat(" 250 250 452 452 250", 5)+" 221", codes(got))
	})
}

// firstLine dials addr and reads the first line.
func firstLine(t *testing.T, addr string) (net.Conn, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return c, line
}

// Past MaxConnections a client gets 421 4.7.0 before anything is read;
// once connections close, new ones are served again.
func TestMaxConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, l := startPipeServer(t, Config{Handoff: &memHandoff{}, MaxConnections: 3})
		firstLine := func() (net.Conn, string) {
			c, err := l.Dial()
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			line, _ := bufio.NewReader(c).ReadString('\n')
			return c, line
		}
		var held []net.Conn
		for range 3 {
			c, line := firstLine()
			require.True(t, strings.HasPrefix(line, "220 "), line)
			held = append(held, c)
		}
		for range 2 {
			_, line := firstLine()
			assert.Equal(t, "421 4.7.0 mx.test Error: too many connections, try again later\r\n", line)
		}
		assert.Equal(t, 3, srv.connLimit.Stats().Open)
		assert.EqualValues(t, 2, srv.connLimit.Stats().Refused)
		for _, c := range held {
			c.Close()
		}
		synctest.Wait()
		assert.Zero(t, srv.connLimit.Stats().Open)
		_, line := firstLine()
		assert.True(t, strings.HasPrefix(line, "220 "), line)
	})
}

func TestMaxConnectionsDefault(t *testing.T) {
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	want := max((int(lim.Cur)-100)/2, 10)
	assert.Equal(t, want, AutoMaxConnections())
	for nofile, want := range map[uint64]int{0: 10, 64: 10, 120: 10, 256: 78, 1024: 462, 1 << 20: 524238} {
		assert.Equal(t, want, autoConns(nofile), "RLIMIT_NOFILE %d", nofile)
	}
	srv, err := New(Config{Handoff: &memHandoff{}})
	require.NoError(t, err)
	assert.Equal(t, want, srv.Config().MaxConnections)
	srv, err = New(Config{Handoff: &memHandoff{}, MaxConnections: -1})
	require.NoError(t, err)
	assert.Nil(t, srv.connLimit)
}

// emfileListener fails Accept with EMFILE while the test says so: what a
// process out of descriptors sees (the real case runs in the integration
// test, with a lowered RLIMIT_NOFILE).
type emfileListener struct {
	net.Listener
	fail chan bool
}

func (l *emfileListener) Accept() (net.Conn, error) {
	select {
	case <-l.fail:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	default:
		return l.Listener.Accept()
	}
}

// Out of descriptors, the limit's listener answers the waiting client from
// its reserve and goes on accepting.
func TestConnLimitOutOfFiles(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	el := &emfileListener{Listener: tcp, fail: make(chan bool, 1)}
	cl := NewConnLimit(ConnLimitConfig{Max: 10, Hostname: "mx.test"})
	defer cl.Close()
	l := cl.Listener(el)
	defer l.Close()
	accepted := make(chan net.Conn, 2)
	el.fail <- true // the first accept finds no descriptor
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()

	_, line := firstLine(t, tcp.Addr().String())
	assert.Equal(t, "421 4.3.2 mx.test Error: out of resources, try again later\r\n", line)
	assert.EqualValues(t, 1, cl.Stats().Exhausted)

	c, err := net.Dial("tcp", tcp.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	select {
	case sc := <-accepted:
		require.NotNil(t, sc, "the listener went on accepting")
		assert.Equal(t, 1, cl.Stats().Open)
		sc.Close()
		sc.Close()
		assert.Equal(t, 0, cl.Stats().Open, "a slot is freed once")
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted after EMFILE")
	}
	l.Close()
	_, open := <-accepted
	assert.False(t, open, "Accept returns after Close")
}
