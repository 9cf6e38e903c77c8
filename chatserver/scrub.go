package chatserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/integrity"
	"kez.lat/kez/sigchain"
	"kez.lat/kez/streams"
)

// ScrubOptions configures Scrub.
type ScrubOptions struct {
	// Domain, if set, names the registry log's C2SP checkpoint origin in
	// the tree head reported.
	Domain string
	// MaxProblems bounds the problems listed per stream (100 if zero);
	// the count of those left out is reported.
	MaxProblems int
}

// ScrubResult is what Scrub found. OK is false when any stream is
// damaged. Its JSON form is stable: fields are added, never changed.
type ScrubResult struct {
	OK      bool           `json:"ok"`
	Streams []StreamReport `json:"streams"`
}

// StreamReport is one stream in a ScrubResult.
type StreamReport struct {
	integrity.State
	// Status is ok, damaged or absent (the stream does not exist yet).
	Status   string   `json:"status"`
	Problems []string `json:"problems,omitempty"`
	// More counts the problems left out of Problems.
	More int `json:"more_problems,omitempty"`
	// Notes are findings that are not damage (handles registered before
	// the look-alike fold fix, see kez.LegacySkeleton); MoreNotes counts
	// those left out.
	Notes     []string `json:"notes,omitempty"`
	MoreNotes int      `json:"more_notes,omitempty"`
	// The registry log: events read, and the C2SP checkpoint body of the
	// Merkle tree over them (the tree head).
	Events   uint64 `json:"events,omitempty"`
	TreeHead string `json:"tree_head,omitempty"`
	// The sigchain stream: chains read.
	Chains int `json:"chains,omitempty"`
}

func (r *StreamReport) note(max int, format string, args ...any) {
	if len(r.Notes) >= max {
		r.MoreNotes++
		return
	}
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *StreamReport) problem(max int, format string, args ...any) {
	if len(r.Problems) >= max {
		r.More++
		return
	}
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Scrub checks every append-only stream end to end, as the stream leaders
// serve them: no gaps (the state the leader reports); the registry log
// read whole (one event and one key and one skeleton claim per handle,
// each claim naming its event's handle, every event a valid registration;
// a handle registered before the look-alike fold fix also has its old
// skeleton's claim, and may share its new one with a look-alike of the
// same age: noted, not damage)
// and hashed, the tree compared with the projection's checkpoint, the
// projection buckets compared with the events; every sigchain verified
// from its first event to its head. It only reads. Damage is reported in
// the result, not as an error; errors mean a stream could not be read.
func Scrub(ctx context.Context, js jetstream.JetStream, opts ScrubOptions) (ScrubResult, error) {
	if opts.MaxProblems <= 0 {
		opts.MaxProblems = 100
	}
	res := ScrubResult{OK: true}
	inspect := streams.Inspector(js)
	var reg *registryScrub
	for _, name := range append(slices.Clone(streams.RegistryAppendOnly), streams.SigchainAppendOnly...) {
		r := StreamReport{Status: "ok"}
		r.Stream = name
		st, err := inspect(ctx, name)
		switch {
		case streams.IsNoStream(err):
			r.Status = "absent"
			res.Streams = append(res.Streams, r)
			continue
		case err != nil:
			return res, err
		}
		r.State = st
		for _, p := range st.Problems() {
			r.problem(opts.MaxProblems, "%s", p)
		}
		switch name {
		case streams.RegistryStream:
			if reg, err = scrubRegistry(ctx, js, &r, opts); err != nil {
				return res, err
			}
		case streams.SigchainStream:
			if err := scrubSigchains(ctx, js, &r, opts.MaxProblems); err != nil {
				return res, err
			}
		}
		res.Streams = append(res.Streams, r)
	}
	if reg != nil {
		if err := reg.compareProjection(ctx, js, res.Streams, opts.MaxProblems); err != nil {
			return res, err
		}
	}
	for i := range res.Streams {
		if r := &res.Streams[i]; len(r.Problems) > 0 {
			r.Status, res.OK = "damaged", false
		}
	}
	return res, nil
}

// registryScrub is what a read of the registry log learnt, for comparing
// the projection with it.
type registryScrub struct {
	records map[string]kez.HandleRecord // local part -> record of its event
	cp      integrity.Checkpoint        // the projection's checkpoint
}

func scrubRegistry(ctx context.Context, js jetstream.JetStream, r *StreamReport, opts ScrubOptions) (*registryScrub, error) {
	proj, err := streams.OpenProjection(ctx, js)
	if err != nil {
		return nil, err
	}
	cp, err := proj.Checkpoint(ctx)
	if err != nil {
		r.problem(opts.MaxProblems, "the projection's checkpoint: %v", err)
	}
	out := &registryScrub{records: map[string]kez.HandleRecord{}, cp: cp}
	type claim struct {
		Handle kez.Handle `json:"handle"`
	}
	keys, skels := map[string]string{}, map[string]string{} // token -> handle local part
	var tree integrity.Tree
	var prev uint64
	cpSeen := cp.Seq == 0
	last, err := streams.ScanRegistry(ctx, js, func(m streams.RegistryMsg) error {
		switch m.Kind {
		case streams.ClaimHandle:
			leaf := integrity.LeafHash(m.Data)
			tree.Append(leaf)
			if cp.Seq > prev && cp.Seq < m.Seq {
				r.problem(opts.MaxProblems, "no event at sequence %d, where the projection's checkpoint ends", cp.Seq)
			}
			prev = m.Seq
			if m.Seq == cp.Seq {
				cpSeen = true
				if tree.Size != cp.Tree.Size || tree.Root() != cp.Tree.Root() || leaf != cp.LastLeaf {
					r.problem(opts.MaxProblems, "up to sequence %d the log hashes to %d events, root %s; the projection's checkpoint recorded %d events, root %s",
						m.Seq, tree.Size, tree.Root(), cp.Tree.Size, cp.Tree.Root())
				}
			}
			var ev kez.RegistryEvent
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				r.problem(opts.MaxProblems, "event %d does not decode: %v", m.Seq, err)
				return nil
			}
			if err := ev.Validate(); err != nil {
				r.problem(opts.MaxProblems, "event %d is not a valid registration: %v", m.Seq, err)
				return nil
			}
			if ev.Handle.Local() != m.Token {
				r.problem(opts.MaxProblems, "event %d for %s is on the subject of %s", m.Seq, ev.Handle, m.Token)
				return nil
			}
			if held, ok := out.records[m.Token]; ok {
				r.problem(opts.MaxProblems, "handle %s registered twice: by %s at %d and by %s at %d", ev.Handle, held.Primary, held.Seq, ev.Primary, m.Seq)
				return nil
			}
			out.records[m.Token] = ev.Record(m.Seq)
		case streams.ClaimKey, streams.ClaimSkeleton:
			var c claim
			if err := json.Unmarshal(m.Data, &c); err != nil || c.Handle.Local() == "" {
				r.problem(opts.MaxProblems, "%s claim %d does not decode", m.Kind, m.Seq)
				return nil
			}
			held := keys
			if m.Kind == streams.ClaimSkeleton {
				held = skels
			}
			if h, ok := held[m.Token]; ok {
				r.problem(opts.MaxProblems, "%s %s claimed twice: for %s, then for %s at %d", m.Kind, m.Token, h, c.Handle.Local(), m.Seq)
				return nil
			}
			held[m.Token] = c.Handle.Local()
		default:
			r.problem(opts.MaxProblems, "message %d on an unknown subject kind %q", m.Seq, m.Kind)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !cpSeen && cp.Seq > prev {
		r.problem(opts.MaxProblems, "the log's events end at sequence %d, before the projection's checkpoint at %d (log last sequence %d)", prev, cp.Seq, last)
	}
	// Every event comes with its key and skeleton claims, in one atomic
	// batch: each must name the event's handle, and no claim may be
	// without its event.
	for local, rec := range out.records {
		if h, ok := keys[rec.Primary.Hex()]; !ok {
			r.problem(opts.MaxProblems, "handle %s (sequence %d) has no key claim", rec.Handle, rec.Seq)
		} else if h != local {
			r.problem(opts.MaxProblems, "the key of handle %s is claimed for %s", rec.Handle, h)
		}
		skel, legacy := rec.Handle.Skeleton(), kez.LegacySkeleton(local)
		// A handle registered before the fold fix claimed its old
		// skeleton; the migration at start claims its new one, unless
		// another such handle that reads alike holds it.
		old := skel != legacy && skels[legacy] == local
		h, ok := skels[skel]
		switch {
		case ok && h == local:
		case !ok && old:
			r.note(opts.MaxProblems, "handle %s (sequence %d), registered before the look-alike fold fix, has no claim on its skeleton %s yet: kez-chat-server claims it at start", rec.Handle, rec.Seq, skel)
		case ok && old && out.records[h].Handle.Skeleton() == skel:
			r.note(opts.MaxProblems, "handles %s and %s, registered before the look-alike fold fix, read alike; both stay registered, the claim on %s names %s", rec.Handle, out.records[h].Handle, skel, h)
		case !ok:
			r.problem(opts.MaxProblems, "handle %s (sequence %d) has no skeleton claim", rec.Handle, rec.Seq)
		default:
			r.problem(opts.MaxProblems, "the skeleton of handle %s is claimed for %s", rec.Handle, h)
		}
	}
	for _, held := range []map[string]string{keys, skels} {
		for token, local := range held {
			if _, ok := out.records[local]; !ok {
				r.problem(opts.MaxProblems, "a claim on %s names handle %s, which has no event", token, local)
			}
		}
	}
	origin := "registry"
	if opts.Domain != "" {
		origin = integrity.Origin(opts.Domain)
	}
	r.Events, r.TreeHead = tree.Size, tree.Note(origin)
	return out, nil
}

// compareProjection compares the projection buckets with the events read:
// every event up to the projection's checkpoint has its record and its
// key entry, and no entry is without an event. Problems are filed against
// the bucket's stream.
func (g *registryScrub) compareProjection(ctx context.Context, js jetstream.JetStream, reports []StreamReport, max int) error {
	report := func(bucket string) *StreamReport {
		for i := range reports {
			if strings.HasSuffix(reports[i].Stream, "_"+bucket) {
				return &reports[i]
			}
		}
		return &StreamReport{} // not watched: dropped
	}
	proj, err := streams.OpenProjection(ctx, js)
	if err != nil {
		return err
	}
	handles, keys := report(streams.HandlesBucket), report(streams.KeysBucket)
	for _, rec := range g.records {
		if rec.Seq > g.cp.Seq {
			continue // not projected yet
		}
		// Read from each bucket's leader, like every check of a stream.
		err := proj.Verify(ctx, rec)
		var se *integrity.StreamError
		switch {
		case errors.As(err, &se) && errors.Is(err, kez.ErrLogDamaged):
			r := handles
			if strings.HasSuffix(se.Stream, "_"+streams.KeysBucket) {
				r = keys
			}
			r.problem(max, "%s", strings.TrimPrefix(se.Err.Error(), kez.ErrLogDamaged.Error()+": "))
		case err != nil:
			return err
		}
	}
	// Entries without an event. A damaged bucket can leave a key listing
	// waiting forever: bound it.
	dctx, cancel := context.WithTimeout(ctx, dumpTimeout)
	defer cancel()
	dump, err := proj.Dump(dctx)
	if err != nil {
		handles.problem(max, "the projection buckets could not be listed whole: %v", err)
		return nil
	}
	for k := range dump {
		bucket, key, _ := strings.Cut(k, "/")
		switch bucket {
		case streams.HandlesBucket:
			if _, ok := g.records[key]; !ok {
				handles.problem(max, "record of %s without an event in the log", key)
			}
		case streams.KeysBucket:
			if local := dump[k]; g.records[local].Primary.Hex() != key {
				keys.problem(max, "key %s maps to %s without an event binding them", key, local)
			}
		}
	}
	return nil
}

// dumpTimeout bounds the read of the projection buckets.
const dumpTimeout = 2 * time.Minute

// scrubSigchains verifies every chain from its first event to its head.
func scrubSigchains(ctx context.Context, js jetstream.JetStream, r *StreamReport, max int) error {
	heads := map[kez.PublicKey]*sigchain.Event{}
	bad := map[kez.PublicKey]bool{}
	_, err := streams.ScanSigchains(ctx, js, func(key kez.PublicKey, m streams.ScanMsg) error {
		if bad[key] {
			return nil
		}
		ev, err := sigchain.ParseEvent(m.Data)
		if err == nil {
			err = sigchain.VerifyAppend(key, heads[key], ev)
		}
		if err != nil {
			bad[key] = true
			r.problem(max, "chain %s: event at sequence %d: %v", key, m.Seq, err)
			return nil
		}
		heads[key] = &ev
		return nil
	})
	for key := range bad {
		heads[key] = nil
	}
	r.Chains = len(heads)
	return err
}
