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
	addrs := n.Addrs()
	err = c.publishAddrs(ctx, addrs)
	if opts.Ready != nil {
		opts.Ready(addrs, err)
	}
	tick := time.NewTicker(addrsCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-n.AddrsChanged():
		}
		if now := n.Addrs(); !slices.Equal(now, addrs) {
			if err := c.publishAddrs(ctx, now); err == nil {
				addrs = now
			}
		}
	}
}

// startNode starts the user's node: serving (on the profile's port, saved
// for next time) or only fetching (any port), its transfers bounded by
// rate.
func (c *Client) startNode(ctx context.Context, listen []string, serving bool, rate p2p.MinRate, log *slog.Logger) (*p2p.Node, error) {
	a, key, err := c.account()
	if err != nil {
		return nil, err
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
	_, err := c.extendChain(ctx, func(a Account, st sigchain.State) []chainEvent {
		id := PeerID(a.Primary)
		if ep := p2pEndpoint(st, id); ep != nil && slices.Equal(ep.Addrs, addrs) {
			return nil
		}
		return []chainEvent{{sigchain.TypeAddEndpoint, sigchain.P2PEndpoint{PeerID: id, Addrs: addrs}}}
	})
	return err
}
