//go:build bench

package bench_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"kez.lat/kez/chatserver"
	"kez.lat/kez/client"
	"kez.lat/kez/nats/natstest"
)

// TestBenchCallout: connects/s of users signing in through the auth
// callout (two responders, as with two replicas) against users declared
// statically as nkeys in the config (which bypass the callout), on the
// same server, serial and 16-way, with latency percentiles.
func TestBenchCallout(t *testing.T) {
	const static = 16
	var staticKeys []nkeys.KeyPair
	ns := natstest.StartWith(t, func(o *server.Options) {
		acc := o.Nkeys[0].Account // KEZ: the service users' account
		for range static {
			kp, _ := nkeys.CreateUser()
			pub, _ := kp.PublicKey()
			staticKeys = append(staticKeys, kp)
			o.Nkeys = append(o.Nkeys, &server.NkeyUser{Nkey: pub, Account: acc})
			o.AuthCallout.AuthUsers = append(o.AuthCallout.AuthUsers, pub)
		}
	})
	cfg := calloutConfig(ns)
	var srv *chatserver.Server
	for range 2 {
		srv = startChatServerCfg(t, cfg)
	}
	// Many users, as in life: each key signs in a few times a second at
	// most. A handful of keys cycled by 16 workers would meet the per-key
	// connection cap (8), which counts a closed connection until the
	// broker's disconnect event arrives.
	const signers = 128
	users := registerUsers(t, srv.URL(), signers)

	staticConnect := func(i int) error {
		kp := staticKeys[i%static]
		pub, _ := kp.PublicKey()
		nc, err := nats.Connect(ns.ClientURL(), nats.Nkey(pub, kp.Sign))
		if err != nil {
			return err
		}
		nc.Close()
		return nil
	}
	calloutConnect := func(i int) error {
		nc, err := client.ConnectNATS(ns.ClientURL(), users[i%signers], nats.MaxReconnects(0))
		if err != nil {
			return err
		}
		nc.Close()
		return nil
	}
	for _, conc := range []int{1, 16} {
		n := 300
		if conc > 1 {
			n = 1600
		}
		var lat latencies
		compare(t, fmt.Sprintf("connect through the auth callout (%d-way)", conc),
			func() float64 { return rate(t, n, conc, staticConnect) },
			func() float64 { return rate(t, n, conc, lat.timed(calloutConnect)) })
		p50, p99 := lat.percentiles()
		fmt.Printf("BENCH connect through the auth callout (%d-way) latency: p50 %v, p99 %v\n", conc, p50, p99)
	}
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) timed(op func(int) error) func(int) error {
	return func(i int) error {
		start := time.Now()
		err := op(i)
		l.mu.Lock()
		l.d = append(l.d, time.Since(start))
		l.mu.Unlock()
		return err
	}
}

func (l *latencies) percentiles() (p50, p99 time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.d)
	if len(l.d) == 0 {
		return 0, 0
	}
	return l.d[len(l.d)/2].Round(10 * time.Microsecond), l.d[len(l.d)*99/100].Round(10 * time.Microsecond)
}
