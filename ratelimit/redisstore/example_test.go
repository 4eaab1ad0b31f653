package redisstore_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"

	"github.com/postern/postern"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/ratelimit/redisstore"
)

// Two relay instances give their harvest guards stores on the same Redis
// and prefix; here the Redis is not running (nothing listens on port 1),
// which shows the default: the guard fails open, counts the error, and
// the mail flows.
func Example() {
	store, err := redisstore.New(redisstore.Config{Addr: "127.0.0.1:1", Prefix: "postern:"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	guard, err := ratelimit.NewGuard(ratelimit.GuardConfig{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	c := &postern.Conn{ID: "c1", Remote: netip.MustParseAddrPort("192.0.2.7:40000")}
	v, _ := guard.CheckRcpt(context.Background(), c, &postern.Txn{}, &postern.Rcpt{Addr: "alice@example.test"})
	fmt.Println("action:", v.Action)
	fmt.Println("reason:", v.Reason)
	fmt.Println("store errors:", guard.Stats().StoreErrors)

	closed, _ := ratelimit.NewGuard(ratelimit.GuardConfig{Store: store, OnError: postern.OnErrorTempFail})
	v, _ = closed.CheckRcpt(context.Background(), c, &postern.Txn{}, &postern.Rcpt{Addr: "alice@example.test"})
	fmt.Println("fail closed:", v.Reply.Error())
	// Output:
	// action: continue
	// reason: harvest guard: store failed checking ip:192.0.2.7/32; on error: accept
	// store errors: 1
	// fail closed: 451 4.3.0 Temporary local problem, try again later
}
