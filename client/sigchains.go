package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"kez.lat/kez"
	"kez.lat/kez/sigchain"
)

// MaxAnswerSize bounds the body of a chain fetched by [Sigchains]: far more
// than the default limits let a chain hold (10,000 events of a few hundred
// bytes), far less than memory.
const MaxAnswerSize = 64 << 20

// Sigchains fetches, verifies and appends sigchains on one sig-server. It
// never trusts the server: every event is verified against the key asked
// for, and a pinned event must still be shown, unchanged.
type Sigchains struct {
	// BaseURL is the sig-server's base URL, e.g. https://sig.kez.lat.
	BaseURL string
	// HTTP is the client used; http.DefaultClient if nil.
	HTTP *http.Client
}

func (c *Sigchains) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// Fetch fetches key's whole chain, verifies it ([sigchain.VerifyChain]) and
// checks that it still holds pin, the tail the caller saw last (the zero
// Pin for a first fetch) ([sigchain.CheckPin]). A chain that lost the
// pinned event fails with [sigchain.ErrRollback], one with another event
// there with [sigchain.ErrRewritten]; a failure to ask matches
// [ErrSigchainUnreachable] (or is an [*APIError]). On success the caller pins
// the returned state's Tail.
func (c *Sigchains) Fetch(ctx context.Context, key kez.PublicKey, pin sigchain.Pin) (sigchain.State, error) {
	events, err := c.Events(ctx, key, 0)
	if err != nil {
		return sigchain.State{}, err
	}
	st, err := sigchain.VerifyChain(key, events)
	if err != nil {
		return sigchain.State{}, err
	}
	if err := sigchain.CheckPin(pin, events); err != nil {
		return sigchain.State{}, err
	}
	return st, nil
}

// Update fetches the events of st's chain from its pinned seqno on
// (?since=<st.Tail.Seqno>, which shows the pinned event again) and returns
// st extended with the new ones ([sigchain.State.Extend]), with the same
// verdicts as [Sigchains.Fetch]. A zero st.Tail fetches the whole chain.
func (c *Sigchains) Update(ctx context.Context, st sigchain.State) (sigchain.State, error) {
	events, err := c.Events(ctx, st.Key, st.Tail.Seqno)
	if err != nil {
		return sigchain.State{}, err
	}
	return st.Extend(events)
}

// Append posts ev to its chain and returns the event the server stored,
// which must be ev itself (same payload): anything else is
// [sigchain.ErrRewritten]. Refusals are [*APIError]s whose Code names
// the reason (wrong_seqno, conflict, rate_limited, ...: see the package
// documentation).
func (c *Sigchains) Append(ctx context.Context, ev sigchain.Event) (sigchain.Event, error) {
	wire, err := ev.MarshalJSON()
	if err != nil {
		return sigchain.Event{}, err
	}
	url := kez.SigchainURL(c.BaseURL, ev.Chain()) + "/events"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(wire))
	if err != nil {
		return sigchain.Event{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	body, err := c.do(req, sigchain.MaxEventSize+1024)
	if err != nil {
		return sigchain.Event{}, err
	}
	stored, err := sigchain.ParseEvent(bytes.TrimSpace(body))
	if err != nil {
		return sigchain.Event{}, fmt.Errorf("stored event: %w", err)
	}
	if stored.Hash() != ev.Hash() {
		return sigchain.Event{}, fmt.Errorf("%w: the server answered another event than the one appended", sigchain.ErrRewritten)
	}
	return stored, nil
}

// Events fetches the events of key's chain from seqno since on (0: all),
// parsed but not verified: callers verify them (VerifyChain) or extend a
// pinned state with them (sigchain.State.Extend), as Fetch and Update do.
func (c *Sigchains) Events(ctx context.Context, key kez.PublicKey, since uint64) ([]sigchain.Event, error) {
	var all []sigchain.Event
	held := 0
	for page := 0; ; page++ {
		events, next, size, err := c.page(ctx, key, since)
		if err != nil {
			return nil, err
		}
		// Everything is held until it verifies: a server must not make
		// the client hold more than a chain can sensibly be.
		if held += size; held > maxChainBytes {
			return nil, fmt.Errorf("%w: chain answer over %d bytes", sigchain.ErrTooLarge, maxChainBytes)
		}
		all = append(all, events...)
		// The next page must start right after this one: a server naming
		// any other since (or paging forever) is not believed.
		if next == 0 {
			return all, nil
		}
		if len(events) == 0 || next != max(since, 1)+uint64(len(events)) || page >= maxPages {
			return nil, fmt.Errorf("%w: chain answer pages do not follow each other", sigchain.ErrMalformed)
		}
		since = next
	}
}

// maxPages bounds the pages of one chain: 10,000 events (the most a chain
// may hold by default) in pages of MaxPage, with room to spare.
const maxPages = 1000

// maxChainBytes bounds the answers of one chain, all pages together:
// 10,000 events (the most a chain may hold by default) of 3 KiB, where
// key and endpoint events are a few hundred bytes.
const maxChainBytes = 32 << 20

// maxPageBytes bounds one page's answer: sigchain.MaxPage events of the
// largest size, with their JSON separators.
const maxPageBytes = sigchain.MaxPage*(sigchain.MaxEventSize+2) + 2

// page gets one page of key's chain from since, the since of the next
// page (0: none) and the size of the answer.
func (c *Sigchains) page(ctx context.Context, key kez.PublicKey, since uint64) ([]sigchain.Event, uint64, int, error) {
	url := kez.SigchainURL(c.BaseURL, key)
	if since > 0 {
		url += "?since=" + strconv.FormatUint(since, 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, 0, err
	}
	req.Header.Set("Accept", "application/json")
	body, header, err := c.doHeader(req, maxPageBytes)
	if err != nil {
		return nil, 0, 0, err
	}
	var next uint64
	if h := header.Get(kez.NextPageHeader); h != "" {
		if next, err = strconv.ParseUint(h, 10, 64); err != nil || next == 0 {
			return nil, 0, 0, fmt.Errorf("%w: chain answer: bad %s", sigchain.ErrMalformed, kez.NextPageHeader)
		}
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '[' {
		return nil, 0, 0, fmt.Errorf("%w: chain answer is not a JSON array", sigchain.ErrMalformed)
	}
	var events []sigchain.Event
	if err := json.Unmarshal(body, &events); err != nil {
		if errors.Is(err, sigchain.ErrMalformed) || errors.Is(err, sigchain.ErrTooLarge) {
			return nil, 0, 0, fmt.Errorf("chain answer: %w", err)
		}
		return nil, 0, 0, fmt.Errorf("%w: chain answer: invalid JSON", sigchain.ErrMalformed)
	}
	if len(events) > sigchain.MaxPage {
		return nil, 0, 0, fmt.Errorf("%w: chain answer page of %d events, over %d", sigchain.ErrMalformed, len(events), sigchain.MaxPage)
	}
	return events, next, len(body), nil
}

// do sends req and returns the body of a 2xx answer of at most limit
// bytes.
func (c *Sigchains) do(req *http.Request, limit int64) ([]byte, error) {
	body, _, err := c.doHeader(req, limit)
	return body, err
}

// doHeader is do, also returning the answer's header.
func (c *Sigchains) doHeader(req *http.Request, limit int64) ([]byte, http.Header, error) {
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrSigchainUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		var eb kez.ErrorBody
		if json.Unmarshal(b, &eb) != nil || eb.Code == "" {
			eb = kez.ErrorBody{Code: "unknown", Error: strings.TrimSpace(http.StatusText(resp.StatusCode))}
		}
		return nil, nil, &APIError{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error, Sigchain: true}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: read answer: %v", ErrSigchainUnreachable, err)
	}
	if int64(len(body)) > limit {
		return nil, nil, fmt.Errorf("%w: answer over %d bytes", sigchain.ErrTooLarge, limit)
	}
	return body, resp.Header, nil
}
