//go:build chaos

package chaos_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/message"
	"kez.lat/kez/sigchain"
	"kez.lat/kez/streams"
)

// ack is one acknowledged operation.
type ack struct {
	at  time.Time
	key string // registration: handle; message: body
	val string // registration: primary key
}

// log collects the acknowledgements of one prober.
type log struct {
	mu   sync.Mutex
	acks []ack
	errs map[string]int
}

func (l *log) add(a ack) { l.mu.Lock(); l.acks = append(l.acks, a); l.mu.Unlock() }
func (l *log) fail(kind string) {
	l.mu.Lock()
	if l.errs == nil {
		l.errs = map[string]int{}
	}
	l.errs[kind]++
	l.mu.Unlock()
}

// gap is the longest time within [from, to] without an acknowledgement.
func (l *log) gap(from, to time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev, longest := from, time.Duration(0)
	for _, a := range l.acks {
		if a.at.Before(from) || a.at.After(to) {
			continue
		}
		longest = max(longest, a.at.Sub(prev))
		prev = a.at
	}
	return max(longest, to.Sub(prev))
}

// register posts a fresh registration of a random handle to base and
// returns it with its key; kind is "" on 201, else the failure's kind.
// An outcome not known is sent again, the same signed body, until it is
// known or ctx ends, as a client would.
func register(ctx context.Context, base string, skew time.Duration, retry bool) (handle string, key kez.PublicKey, code int, kind string) {
	k, err := kez.GenerateKey(rand.Reader)
	if err != nil {
		return "", key, 0, "keygen"
	}
	return registerKey(ctx, base, k, skew, retry)
}

// registerKey is register with the key given.
func registerKey(ctx context.Context, base string, k *kez.PrivateKey, skew time.Duration, retry bool) (handle string, key kez.PublicKey, code int, kind string) {
	handle = "c" + strings.ToLower(rand.Text()[:20])
	hd, err := kez.ParseHandle(handle, domain)
	if err != nil {
		return "", key, 0, "handle"
	}
	body, _ := json.Marshal(kez.NewRegistrationRequest(k, hd, time.Now().Add(skew)))
	c := &http.Client{Timeout: 20 * time.Second}
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/register", bytes.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			kind = "unreachable"
			time.Sleep(200 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusCreated {
			return handle, k.Public(), resp.StatusCode, ""
		}
		var e struct{ Code string }
		_ = json.Unmarshal(b, &e)
		if resp.StatusCode < 500 || !retry {
			return handle, k.Public(), resp.StatusCode, e.Code
		}
		kind = e.Code
		time.Sleep(200 * time.Millisecond)
	}
	return handle, k.Public(), 0, kind
}

// regProbe registers through base every interval until ctx ends.
func regProbe(ctx context.Context, base string, interval time.Duration, l *log) {
	for ctx.Err() == nil {
		h, key, _, kind := register(ctx, base, 0, true)
		if kind == "" {
			l.add(ack{at: time.Now(), key: h, val: key.String()})
		} else if ctx.Err() == nil {
			l.fail(kind)
		}
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
}

// present checks every acknowledged registration against the registry,
// through base: lost are acknowledged handles that do not resolve to
// their key.
func presentRegs(t *testing.T, base string, logs ...*log) (acked, present, lost int) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	for _, l := range logs {
		for _, a := range l.acks {
			acked++
			var rec struct{ Primary string }
			for try := 0; ; try++ {
				resp, err := c.Get(base + "/v1/u/" + a.key)
				if err == nil {
					_ = json.NewDecoder(resp.Body).Decode(&rec)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound || try > 20 {
						break
					}
				}
				time.Sleep(500 * time.Millisecond)
			}
			if rec.Primary == a.val {
				present++
			} else {
				lost++
				t.Logf("LOST registration %s (%s): registry says %q", a.key, a.val, rec.Primary)
			}
		}
	}
	return acked, present, lost
}

// user is a registered user with its own broker connection.
type user struct {
	key *kez.PrivateKey
	id  *message.Identity
	in  client.Inbox
}

// newUser registers a user through base and connects it to natsURL.
func newUser(t *testing.T, base, natsURL string) *user {
	t.Helper()
	for try := 0; ; try++ {
		k, err := kez.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		hd, _ := kez.ParseHandle("u"+strings.ToLower(rand.Text()[:12]), domain)
		body, _ := json.Marshal(kez.NewRegistrationRequest(k, hd, time.Now()))
		resp, err := http.Post(base+"/v1/register", "application/json", bytes.NewReader(body))
		if err == nil {
			resp.Body.Close()
		}
		if err != nil || resp.StatusCode != http.StatusCreated {
			if try > 20 {
				t.Fatalf("register a user: %v %v", resp, err)
			}
			time.Sleep(500 * time.Millisecond)
			continue
		}
		nc, err := client.ConnectNATS(natsURL, k)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		id := message.NewIdentity(k)
		t.Cleanup(id.Close)
		return &user{key: k, id: id, in: client.Inbox{NC: nc, Me: k.Public()}}
	}
}

// msgProbe sends from u to to every interval, bodies tag-n, until ctx
// ends; a send whose outcome is not known is sent again as it was (the
// door drops a resend of a stored message).
func msgProbe(ctx context.Context, u *user, to kez.PublicKey, tag string, interval time.Duration, l *log) {
	for n := 0; ctx.Err() == nil; n++ {
		body := fmt.Sprintf("%s-%d", tag, n)
		_, wire, err := message.Seal(u.id, to, message.Text(body), time.Now(), nil)
		if err != nil {
			l.fail("seal")
			return
		}
		for ctx.Err() == nil {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := u.in.Send(sctx, wire)
			cancel()
			if err == nil {
				l.add(ack{at: time.Now(), key: body})
				break
			}
			if ctx.Err() == nil {
				l.fail(errKind(err))
				time.Sleep(100 * time.Millisecond)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
}

func errKind(err error) string {
	s := err.Error()
	for _, k := range []string{"unavailable", "unreachable", "store_full", "timeout", "deadline", "no responders", "disconnected"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}

// drain reads r's whole inbox and returns how often each body came.
func drain(t *testing.T, r *user) map[string]int {
	t.Helper()
	got := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for try := 0; ; try++ {
		err := r.in.Drain(ctx, func(m client.InboxMsg) error {
			env, err := r.id.Parse(m.Data)
			if err != nil {
				return err
			}
			pt, err := env.Open(r.id, m.Sender)
			if err != nil {
				return err
			}
			got[pt.Body()]++
			return nil
		})
		if err == nil {
			return got
		}
		if try > 10 {
			t.Fatalf("drain: %v", err)
		}
		time.Sleep(time.Second)
	}
}

// presentMsgs compares acknowledged sends with what the recipient read.
func presentMsgs(got map[string]int, logs ...*log) (acked, present, lost, dup int) {
	for _, l := range logs {
		for _, a := range l.acks {
			acked++
			switch n := got[a.key]; {
			case n == 0:
				lost++
			default:
				present++
				dup += n - 1
			}
		}
	}
	return
}

// tally is one kind of write in a row: acknowledged, present, lost,
// duplicated, and the longest gap between acknowledgements per replica.
type tally struct {
	what                      string // reg, msg, sig
	acked, present, lost, dup int
	dups                      bool // duplicates counted (a registration cannot repeat: one handle, one 201)
	gaps                      []time.Duration
}

// row is one line of the figures.
type row struct {
	scenario string
	tallies  []tally
	note     string
}

func (r row) String() string {
	var counts, gaps []string
	for _, c := range r.tallies {
		s := fmt.Sprintf("%s acked %5d present %5d lost %d", c.what, c.acked, c.present, c.lost)
		if c.dups {
			s += fmt.Sprintf(" dup %d", c.dup)
		}
		counts = append(counts, s)
		var g []string
		for _, d := range c.gaps {
			g = append(g, d.Round(100*time.Millisecond).String())
		}
		gaps = append(gaps, c.what+" "+strings.Join(g, " / "))
	}
	return fmt.Sprintf("%-34s %s | longest gap per replica: %s %s", r.scenario, strings.Join(counts, " | "), strings.Join(gaps, ", "), r.note)
}

func errSummary(logs ...*log) string {
	m := map[string]int{}
	for _, l := range logs {
		for k, v := range l.errs {
			m[k] += v
		}
	}
	var s []string
	for k, v := range m {
		s = append(s, fmt.Sprintf("%s=%d", k, v))
	}
	slices.Sort(s)
	if len(s) == 0 {
		return ""
	}
	return "(failed attempts: " + strings.Join(s, " ") + ")"
}

// sigProbe appends add_claim events to k's chain through sc every
// interval, until ctx ends; an append whose outcome is not known is sent
// again as it was (the sig-server answers a retry of its chain's tail
// 200). A refusal (wrong_seqno, conflict, ...) means the chain is not the
// one this prober built: it is logged as "refused:<code>" and the prober
// stops.
func sigProbe(ctx context.Context, sc *client.Sigchains, k *kez.PrivateKey, tag string, interval time.Duration, l *log) {
	var prev *sigchain.Event
	for n := 1; ctx.Err() == nil; n++ {
		ev, err := sigchain.Next(k, prev, sigchain.TypeAddClaim,
			sigchain.Claim{Kind: "dns", Value: fmt.Sprintf("%s-%d.example", tag, n), Proof: "TXT record"}, time.Now())
		if err != nil {
			l.fail("sign")
			return
		}
		for ctx.Err() == nil {
			actx, cancel := context.WithTimeout(ctx, 20*time.Second)
			_, err := sc.Append(actx, ev)
			cancel()
			if err == nil {
				l.add(ack{at: time.Now(), key: k.Public().String(), val: ev.Hash()})
				prev = &ev
				break
			}
			if ctx.Err() != nil {
				return
			}
			var ae *client.APIError
			if errors.As(err, &ae) && ae.Status < 500 && ae.Code != "rate_limited" {
				l.fail("refused:" + ae.Code)
				return
			}
			l.fail(errKind(err))
			time.Sleep(200 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
}

// presentSigs reads back every chain the logs appended to, through sc,
// verifies it, and counts the acknowledged events in it: lost are those
// not there, dup the extra copies, in what the server shows and in
// what the stream stores for the chain (js, the operator's view).
func presentSigs(t *testing.T, sc *client.Sigchains, js jetstream.JetStream, logs ...*log) (acked, present, lost, dup int) {
	t.Helper()
	chains := map[string][]ack{}
	for _, l := range logs {
		for _, a := range l.acks {
			chains[a.key] = append(chains[a.key], a)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, streams.SigchainStream)
	if err != nil {
		t.Fatalf("stream %s: %v", streams.SigchainStream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(streams.SigchainSubjects))
	if err != nil {
		t.Fatalf("stream %s: %v", streams.SigchainStream, err)
	}
	for chain, acks := range chains {
		key, err := kez.ParsePublicKey(chain)
		if err != nil {
			t.Fatal(err)
		}
		var events []sigchain.Event
		for try := 0; ; try++ {
			if events, err = sc.Events(ctx, key, 0); err == nil {
				break
			}
			if try > 20 {
				t.Fatalf("read chain %s: %v", chain, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if _, err := sigchain.VerifyChain(key, events); err != nil {
			t.Errorf("chain %s does not verify: %v", chain, err)
		}
		if stored := int(info.State.Subjects[streams.SigchainSubject(key)]); stored != len(events) {
			t.Logf("chain %s: the stream stores %d events, the server shows %d", chain, stored, len(events))
			dup += max(stored-len(events), 0)
		}
		seen := map[string]int{}
		for _, e := range events {
			seen[e.Hash()]++
		}
		for _, a := range acks {
			acked++
			switch n := seen[a.val]; n {
			case 0:
				lost++
				t.Logf("LOST sigchain event %s of %s", a.val, chain)
			default:
				present++
				dup += n - 1
			}
		}
	}
	return acked, present, lost, dup
}
