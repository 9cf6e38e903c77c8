package chatserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/callout"
	"kez.lat/kez/registry"
)

// disconnects turns a user's presence offline the moment the broker
// reports that the connection which announced it closed (a kill -9
// included), instead of when the announcement's TTL runs out. The broker
// publishes every closed connection of the users' account on
// $SYS.ACCOUNT.<account>.DISCONNECT, which nats/nats.conf exports from
// SYS to KEZ; the replicas share the events in one queue group. The event
// names the user by the handle our callout gave the connection, and the
// connection by server and client id, which the presence entry records:
// only the connection that announced can end it, so a closed `send`
// beside a running `listen` changes nothing. An invisible user has no
// entry, and gets none.
type disconnects struct {
	kv     jetstream.KeyValue
	users  *registry.Cache
	domain string
	now    func() time.Time
	logger *slog.Logger
}

// watchDisconnects subscribes to the users' account's disconnect events.
func (s *Server) watchDisconnects(ctx context.Context, js jetstream.JetStream, account, domain string) error {
	kv, err := js.KeyValue(ctx, kez.PresenceBucket)
	if err != nil {
		return fmt.Errorf("presence bucket: %w", err)
	}
	d := &disconnects{kv: kv, users: s.Registry.Cache(), domain: domain, now: time.Now, logger: s.logger.With("component", "presence")}
	_, disconnect := callout.ConnEventSubjects(account)
	_, err = s.nc.QueueSubscribe(disconnect, "kez-presence", func(m *nats.Msg) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.closed(ctx, m.Data); err != nil {
			d.logger.Debug("disconnect event", "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("disconnect events: %w", err)
	}
	return nil
}

// closed handles one disconnect event: if the connection it names is the
// one the user's presence entry says announced "online", the entry
// becomes "offline" (compare-and-set: a renewal that came first wins).
func (d *disconnects) closed(ctx context.Context, data []byte) error {
	ev, err := callout.ParseConnEvent(data)
	if err != nil {
		return err
	}
	h, err := kez.ParseHandle(ev.Client.User, d.domain)
	if err != nil || h.Domain() != d.domain {
		return fmt.Errorf("event for %q: not a handle of ours", ev.Client.User)
	}
	rec, ok := d.users.Lookup(h.Local())
	if !ok {
		return fmt.Errorf("event for %s: not in the cache", h)
	}
	key := rec.Primary.Hex()
	e, err := d.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil // invisible, or never announced
	}
	if err != nil {
		return err
	}
	var cur kez.PresenceEntry
	if json.Unmarshal(e.Value(), &cur) != nil || cur.Status != kez.PresenceOnline ||
		cur.Server != ev.Server.ID || cur.Conn != ev.Client.ID {
		return nil
	}
	off, _ := json.Marshal(kez.PresenceEntry{Status: kez.PresenceOffline, TS: d.now().Unix()})
	if _, err := d.kv.Update(ctx, key, off, e.Revision()); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	return nil
}
