package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"kez.lat/kez/p2p"
	"kez.lat/kez/sigchain"
)

// nodeFile keeps the port the node listened on, so that its advertised
// addresses (in the sigchain) stay the same from one run to the next.
const nodeFile = "node.json"

type nodeState struct {
	Port int `json:"port"`
}

// ServeOptions tune [Client.Serve].
type ServeOptions struct {
	// Listen overrides the node's listening multiaddrs (default: TCP and
	// QUIC on every interface, on the port of the last run). A
	// relay-only node ([Config.RelayOnly]) listens on none.
	Listen []string
	// Log receives the node's log; discarded if nil.
	Log *slog.Logger
	// Ready, if not nil, is called once the node listens and the sigchain
	// advertises its addresses (or publishing them failed: err).
	Ready func(addrs []string, err error)
}

// addrsCheck is how often Serve compares the node's addresses with the
// ones the sigchain advertises (interfaces change); a relay reservation
// made or lost is published at once.
const addrsCheck = time.Minute

// Serve runs the user's P2P node until ctx ends: it serves the current
// shared-files manifest to anyone and each shared file to the users it is
// shared with, holds reservations on the relays the home server
// advertises, and keeps the sigchain's p2p endpoint listing the node's
// addresses.
func (c *Client) Serve(ctx context.Context, opts ServeOptions) error {
	n, err := c.startNode(ctx, opts.Listen, true, p2p.MinRate{}, opts.Log)
	if err != nil {
		return err
	}
	defer n.Close()
	// published is what the sigchain was last made to list, once a
	// publish succeeded (ok): one that failed (the sig-server
	// unreachable) is tried again publishRetry later.
	addrs := n.Addrs()
	err = c.publishAddrs(ctx, addrs)
	published, ok := addrs, err == nil
	if opts.Ready != nil {
		opts.Ready(addrs, err)
	}
	tick := time.NewTicker(addrsCheck)
	defer tick.Stop()
	retry := time.NewTimer(publishRetry)
	defer retry.Stop()
	if err == nil {
		retry.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-retry.C:
		case <-n.AddrsChanged():
		}
		if now := n.Addrs(); !ok || !slices.Equal(now, published) {
			if err := c.publishAddrs(ctx, now); err == nil {
				published, ok = now, true
			} else {
				ok = false
				retry.Reset(publishRetry)
			}
		}
	}
}

// publishRetry is how soon Serve publishes its addresses again after
// publishing them failed.
const publishRetry = 5 * time.Second

// startNode starts the user's node: serving (on the profile's port, saved
// for next time) or only fetching (any port), its transfers bounded by
// rate.
func (c *Client) startNode(ctx context.Context, listen []string, serving bool, rate p2p.MinRate, log *slog.Logger) (*p2p.Node, error) {
	a, key, err := c.account()
	if err != nil {
		return nil, err
	}
	// The chain may still list the direct addresses of an earlier run: a
	// relay-only node replaces them at once, whether it publishes its own
	// (its circuits, serving: which may fail, or wait for a reservation)
	// or none (fetching).
	if c.cfg.RelayOnly {
		c.hideAddrs(ctx)
	}
	store, err := c.blobs()
	if err != nil {
		return nil, err
	}
	cfg := p2p.Config{Key: key, Listen: listen, Store: store, PortMap: true, RelayOnly: c.cfg.RelayOnly, MinRate: rate, Log: log}
	if serving {
		cfg.Allow, cfg.Reserve = c.allowFunc(), true
	}
	if rec, err := c.homeRecord(ctx, a); err == nil {
		cfg.Relays = rec.Relays
	} else if c.cfg.Note != nil {
		c.cfg.Note(fmt.Sprintf("no relays: the home server did not answer (%v); only direct connections", err))
	}
	if c.cfg.RelayOnly && len(cfg.Relays) == 0 {
		return nil, withHint(errors.New("relay-only: the home server advertises no relay"), "drop --relay-only, or ask the operator to run kez-relay")
	}
	// A serving node on default addresses listens on the port of the last
	// run, so that the addresses its sigchain advertises stay the same. A
	// relay-only node listens on no port (and keeps the one saved).
	samePort := serving && listen == nil && !c.cfg.RelayOnly
	var st nodeState
	if samePort {
		if err := readJSON(c.p.path(nodeFile), &st); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if st.Port != 0 {
			cfg.Listen = p2p.ListenOn(st.Port)
		}
	}
	n, err := p2p.New(ctx, cfg)
	if err != nil && st.Port != 0 {
		cfg.Listen = nil // the port is taken: any port, saved below
		n, err = p2p.New(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	if samePort && n.Port() != st.Port {
		_ = writeJSON(c.p.path(nodeFile), nodeState{Port: n.Port()})
	}
	return n, nil
}

// hideAddrs is hideDirectAddrs for a relay-only run that goes on if it
// fails: the run itself shows peers no address of ours; it notes the
// failure.
func (c *Client) hideAddrs(ctx context.Context) {
	if err := c.hideDirectAddrs(ctx); err != nil && c.cfg.Note != nil {
		c.cfg.Note(fmt.Sprintf("relay-only: your sigchain still lists this device's direct addresses: %v", err))
	}
}

// homeRecord returns the home server's record of the own handle (for the
// relays it advertises).
func (c *Client) homeRecord(ctx context.Context, a Account) (Record, error) {
	home, err := c.home()
	if err != nil {
		return Record{}, err
	}
	tctx, cancel := withTimeout(ctx)
	defer cancel()
	return home.User(tctx, a.Handle)
}

// publishAddrs makes the sigchain's p2p endpoint list addrs.
func (c *Client) publishAddrs(ctx context.Context, addrs []string) error {
	return c.updateAddrs(ctx, func([]string) []string { return addrs })
}

// updateAddrs makes the sigchain's p2p endpoint list what f returns for
// the addresses it lists now (none if it has no endpoint), unless that
// is what it lists.
func (c *Client) updateAddrs(ctx context.Context, f func(old []string) []string) error {
	_, err := c.extendChain(ctx, func(a Account, st sigchain.State) []chainEvent {
		id := PeerID(a.Primary)
		ep := p2pEndpoint(st, id)
		var old []string
		if ep != nil {
			old = ep.Addrs
		}
		addrs := f(old)
		if ep != nil && slices.Equal(old, addrs) {
			return nil
		}
		return []chainEvent{{sigchain.TypeAddEndpoint, sigchain.P2PEndpoint{PeerID: id, Addrs: addrs}}}
	})
	return err
}

// hideDirectAddrs makes the sigchain's p2p endpoint list only the relay
// circuit addresses it lists, for a relay-only run: a normal run before
// published the device's direct addresses (its IP address), and they
// stayed there for contacts to read while every transfer went through
// the relay. The chain's earlier events still hold them: a sigchain is
// append-only. It does nothing, without asking the server, when the
// account's copy of the chain lists no direct address.
func (c *Client) hideDirectAddrs(ctx context.Context) error {
	a, _, err := c.account()
	if err != nil {
		return err
	}
	if ep := p2pEndpoint(a.Chain, PeerID(a.Primary)); ep == nil || len(p2p.CircuitAddrs(ep.Addrs)) == len(ep.Addrs) {
		return nil
	}
	return c.updateAddrs(ctx, p2p.CircuitAddrs)
}
