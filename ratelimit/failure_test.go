package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// Every OnError value of the filter, the harvest guard and the AUTH
// limiter when the store cannot be asked: the default fails open, as it
// always has; tempfail and reject answer with each stage's code.
func TestStoreDownErrorPolicy(t *testing.T) {
	ctx := context.Background()
	const (
		temp      = "451 4.3.0 Temporary local problem, try again later"
		tempConn  = "421 4.3.0 Temporary local problem, try again later"
		rej       = "550 5.3.0 Local problem, mail refused"
		rejConn   = "554 5.3.0 Local problem, mail refused"
		authTemp  = "454 4.3.0 Temporary authentication failure"
		authRej   = "554 5.3.0 Authentication unavailable"
		noReply   = "no reply"
		rateOne   = time.Minute
		threshold = 2
	)
	for _, tc := range []struct {
		policy                        postern.ErrorPolicy
		action                        postern.Action
		mail, rcpt, connect, authWant string
	}{
		{postern.OnErrorDefault, postern.Continue, noReply, noReply, noReply, noReply},
		{postern.OnErrorAccept, postern.Continue, noReply, noReply, noReply, noReply},
		{postern.OnErrorTempFail, postern.TempFail, temp, temp, tempConn, authTemp},
		{postern.OnErrorReject, postern.Reject, rej, rej, rejConn, authRej},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			c := conn("192.0.2.7")
			check := func(what string, v postern.Verdict, st postern.Stage, want string) {
				t.Helper()
				assert.Equal(t, tc.action, v.Action, what)
				assert.Equal(t, want, v.Reply.Error(), what)
				assert.Contains(t, v.Reason, "store failed", what)
				if st != 0 && tc.action != postern.Continue {
					assert.Equal(t, want, v.ReplyAt(st).Error(), "%s: sent as is", what)
				}
			}

			f, err := NewFilter(FilterConfig{Store: failingStore{}, Messages: Rate{Count: 1, Per: rateOne},
				Recipients: Rate{Count: 1, Per: rateOne}, OnError: tc.policy})
			require.NoError(t, err)
			v, err := f.CheckMail(ctx, c, &postern.Txn{})
			require.NoError(t, err, "a store error never reaches the chain")
			check("filter mail", v, postern.StageMail, tc.mail)
			v, err = f.CheckRcpt(ctx, c, &postern.Txn{}, &postern.Rcpt{Addr: "a@example.test"})
			require.NoError(t, err)
			check("filter rcpt", v, postern.StageRcpt, tc.rcpt)

			g, err := NewGuard(GuardConfig{Store: failingStore{}, Threshold: threshold, AtMail: true, AtConnect: true,
				OnError: tc.policy})
			require.NoError(t, err)
			v, err = g.CheckConnect(ctx, c)
			require.NoError(t, err)
			check("guard connect", v, postern.StageConnect, tc.connect)
			v, err = g.CheckMail(ctx, c, &postern.Txn{})
			require.NoError(t, err)
			check("guard mail", v, postern.StageMail, tc.mail)
			check("guard rcpt", rcptAction(t, g, c), postern.StageRcpt, tc.rcpt)

			a, err := NewAuthLimiter(AuthConfig{Store: failingStore{}, OnError: tc.policy})
			require.NoError(t, err)
			check("auth", a.CheckAuth(ctx, "user:alice"), 0, tc.authWant)
		})
	}

	bad := postern.OnErrorReject + 1
	_, err := NewFilter(FilterConfig{Messages: Rate{Count: 1, Per: rateOne}, OnError: bad})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewGuard(GuardConfig{OnError: bad})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewAuthLimiter(AuthConfig{OnError: bad})
	assert.ErrorIs(t, err, ErrConfig)
}
