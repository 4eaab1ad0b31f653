package smtpserver

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): prompt for the user name, then the password.
// Outlook and many devices still only speak LOGIN; go-sasl has only the
// client side.
type loginServer struct {
	check func(user, pass string) error
	step  int
	user  string
}

var errLoginSequence = errors.New("smtpserver: unexpected LOGIN response")

func newLoginServer(check func(user, pass string) error) sasl.Server {
	return &loginServer{check: check}
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(response) == 0 {
			return []byte("Username:"), false, nil
		}
		fallthrough // initial response carries the user name
	case 1:
		l.user = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(response))
	}
	return nil, false, errLoginSequence
}
