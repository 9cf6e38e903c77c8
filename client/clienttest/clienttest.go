// Package clienttest starts the whole kez stack in-process for the
// client's, the CLI's and the integration tests: the reference
// nats-server (natstest, nats/nats.conf), kez-sig-server and
// kez-chat-server with the auth callout, each on a loopback port (or on a
// given address, for clients in other network namespaces). It is
// imported by tests only.
package clienttest

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"kez.lat/kez/chatserver"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/sigserver"
)

// Domain is the home domain of the test stack.
const Domain = "kez.test"

// Stack is a running broker, sig-server and home server.
type Stack struct {
	NATS *natstest.Server
	Sig  *sigserver.Server
	Chat *chatserver.Server
}

// URL returns the home server's base URL.
func (s *Stack) URL() string { return s.Chat.URL() }

// Start starts the stack and stops it at the end of the test.
func Start(tb testing.TB) *Stack {
	tb.Helper()
	return StartWith(tb, nil)
}

// StartWith is Start with a hook that adjusts the home server's
// configuration (inbox limits, ...) before it starts.
func StartWith(tb testing.TB, adjust func(*chatserver.Config)) *Stack {
	tb.Helper()
	return StartOn(tb, "127.0.0.1", adjust)
}

// StartOn is StartWith with the broker, the sig-server and the home
// server listening on the IP address host instead of loopback, so that
// clients in other network namespaces reach them: the NATS and sigchain
// URLs the home server advertises name host too.
func StartOn(tb testing.TB, host string, adjust func(*chatserver.Config)) *Stack {
	tb.Helper()
	return start(tb, host, nil, adjust)
}

// StartWithNATS is StartWith with a hook that adjusts the broker's
// options too (its store folder and limits, ...) before it starts.
func StartWithNATS(tb testing.TB, adjustNATS func(*server.Options), adjust func(*chatserver.Config)) *Stack {
	tb.Helper()
	return start(tb, "127.0.0.1", adjustNATS, adjust)
}

func start(tb testing.TB, host string, adjustNATS func(*server.Options), adjust func(*chatserver.Config)) *Stack {
	tb.Helper()
	st := &Stack{NATS: natstest.StartWith(tb, func(o *server.Options) {
		o.Host = host
		if adjustNATS != nil {
			adjustNATS(o)
		}
	})}
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)

	scfg := SigConfig(st.NATS)
	scfg.HTTPAddr = net.JoinHostPort(host, "0")
	sig, err := sigserver.Start(ctx, scfg, logger)
	if err != nil {
		tb.Fatalf("start sig-server: %v", err)
	}
	st.Sig = sig
	tb.Cleanup(func() { closeWith(sig.Close) })

	ccfg := ChatConfig(st.NATS)
	ccfg.HTTPAddr = net.JoinHostPort(host, "0")
	ccfg.SigchainURL = sig.URL()
	ccfg.PublicNATS = st.NATS.ClientURL()
	ccfg.Streams.RegisterLimit = 100000
	if adjust != nil {
		adjust(&ccfg)
	}
	chat, err := chatserver.Start(ctx, ccfg, logger)
	if err != nil {
		tb.Fatalf("start chat-server: %v", err)
	}
	st.Chat = chat
	tb.Cleanup(func() { closeWith(chat.Close) })
	// The tests expect a ready home server, as an operator's health check
	// does before sending users to it: its projection caught up, its
	// skeleton migration done. On a loaded machine that takes a moment.
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r := chat.Ready.Ready(ctx)
		if r.OK() {
			break
		}
		if time.Now().After(end) {
			tb.Fatalf("chat-server not ready after 30 s: %v", r.Failing)
		}
	}
	return st
}

// ChatConfig returns the configuration of a home server for tests on ns:
// its NATS user and the auth callout's keys from ns, HTTP on
// 127.0.0.1:0, the domain Domain, and a registration limit of 1000 per
// address.
func ChatConfig(ns *natstest.Server) chatserver.Config {
	cfg := chatserver.DefaultConfig()
	cfg.NATSURL = ns.ClientURL()
	cfg.NATSNKeyFile = ns.KeyFile(natskeys.KeyChatServer)
	cfg.CalloutNKeyFile = ns.KeyFile(natskeys.KeyCallout)
	cfg.CalloutIssuerFile = ns.KeyFile(natskeys.KeyIssuer)
	cfg.CalloutXKeyFile = ns.KeyFile(natskeys.KeyXKey)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Domain = Domain
	cfg.Streams.RegisterLimit = 1000
	return cfg
}

// SigConfig returns the configuration of a sig-server for tests on ns:
// its NATS user from ns, HTTP on 127.0.0.1:0, and an append limit of
// 1000 per chain.
func SigConfig(ns *natstest.Server) sigserver.Config {
	cfg := sigserver.DefaultConfig()
	cfg.NATSURL = ns.ClientURL()
	cfg.NATSNKeyFile = ns.KeyFile(natskeys.KeySigServer)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Streams.AppendLimit = 1000
	return cfg
}

func closeWith(close func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	close(ctx)
}
