package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"kez.lat/kez"
)

// defaultTimeout bounds a call whose context has no deadline.
const defaultTimeout = 15 * time.Second

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultTimeout)
}

// APIError is an error answer of a home server or a sig-server: its
// status and the code and message of its JSON body. It matches the kez
// sentinel of its code ([kez.CodeError]: kez.ErrNotFound for not_found,
// kez.ErrHandleTaken for handle_taken, ...), and a 5xx answer matches
// [ErrUnreachable] (a home server's) or [ErrSigchainUnreachable] (a
// sig-server's).
type APIError struct {
	Status  int
	Code    string
	Message string
	// Date is the server's clock when it answered (its Date header;
	// zero without one), by which a client tells how far off its own
	// clock is.
	Date time.Time
	// RetryAfter is how long the server asks to wait before trying
	// again (its Retry-After header in seconds; 0 without one).
	RetryAfter time.Duration
	// Sigchain is set on a sig-server's answers.
	Sigchain bool
}

func (e *APIError) Error() string {
	switch {
	case e.Sigchain:
		return fmt.Sprintf("sigchain server answered %d %s: %s", e.Status, e.Code, e.Message)
	case e.Message == "":
		return fmt.Sprintf("server answered %d %s", e.Status, e.Code)
	}
	return e.Message
}

// Is matches the sentinel of e's code, and for 5xx ErrUnreachable or,
// from a sig-server, ErrSigchainUnreachable.
func (e *APIError) Is(target error) bool {
	switch target {
	case nil:
		return false
	case ErrUnreachable:
		return e.Status >= 500 && !e.Sigchain
	case ErrSigchainUnreachable:
		return e.Status >= 500 && e.Sigchain
	}
	return kez.CodeError(e.Code) == target
}

// Home is a client of one home server's HTTP API.
type Home struct {
	// BaseURL is the server's base URL, e.g. https://kez.lat.
	BaseURL string
	// HTTP is the client used; http.DefaultClient if nil.
	HTTP *http.Client
}

func (h Home) httpClient() *http.Client {
	if h.HTTP != nil {
		return h.HTTP
	}
	return http.DefaultClient
}

// maxRecordSize bounds a record answer (a few hundred bytes).
const maxRecordSize = 64 << 10

// User looks up handle h (GET /v1/u/{handle}) and checks the answer: the
// record must be for h, its key valid and its registration signature
// valid ([ErrBadRecord] otherwise). A missing handle is kez.ErrNotFound.
func (h Home) User(ctx context.Context, handle kez.Handle) (Record, error) {
	rec, err := h.record(ctx, "/v1/u/"+url.PathEscape(handle.String()))
	if err != nil {
		return Record{}, err
	}
	if rec.Handle != handle {
		return Record{}, fmt.Errorf("%w: asked for %s, got %s", ErrBadRecord, handle, rec.Handle)
	}
	return rec, nil
}

// Key looks up the handle bound to key (GET /v1/k/{primary}), with the
// checks of [Home.User].
func (h Home) Key(ctx context.Context, key kez.PublicKey) (Record, error) {
	rec, err := h.record(ctx, "/v1/k/"+key.String())
	if err != nil {
		return Record{}, err
	}
	if !rec.Primary.Equal(key) {
		return Record{}, fmt.Errorf("%w: asked for %s, got %s", ErrBadRecord, key, rec.Primary)
	}
	return rec, nil
}

// Register posts a signed registration and returns the record created.
func (h Home) Register(ctx context.Context, req kez.RegistrationRequest) (Record, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Record{}, err
	}
	var raw kez.Record
	if err := h.do(ctx, http.MethodPost, "/v1/register", body, &raw); err != nil {
		return Record{}, err
	}
	return checkRecord(raw)
}

// Health reports whether the server answers its health check.
func (h Home) Health(ctx context.Context) error {
	var v json.RawMessage
	return h.do(ctx, http.MethodGet, "/v1/healthz", nil, &v)
}

func (h Home) record(ctx context.Context, path string) (Record, error) {
	var raw kez.Record
	if err := h.do(ctx, http.MethodGet, path, nil, &raw); err != nil {
		return Record{}, err
	}
	return checkRecord(raw)
}

func (h Home) do(ctx context.Context, method, path string, body []byte, out any) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	base := strings.TrimRight(h.BaseURL, "/")
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("home server %q: %w", h.BaseURL, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.httpClient().Do(req)
	if errors.Is(err, ErrInsecure) {
		return unwrapURLError(err)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRecordSize))
	if err != nil {
		return fmt.Errorf("%w: %s: read answer: %v", ErrUnreachable, base, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var eb struct{ Error, Code string }
		if json.Unmarshal(b, &eb) != nil || eb.Code == "" {
			eb.Code, eb.Error = "unknown", fmt.Sprintf("%s answered %s", base, resp.Status)
		}
		ae := &APIError{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error}
		ae.Date, _ = http.ParseTime(resp.Header.Get("Date"))
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			ae.RetryAfter = time.Duration(secs) * time.Second
		}
		return ae
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w: %s: answer is not the expected JSON", ErrBadRecord, base)
	}
	return nil
}

// unwrapURLError drops the method and URL net/http repeats in its errors.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Record is a handle record as a client checked it.
type Record struct {
	Handle  kez.Handle
	Primary kez.PublicKey
	// SigchainBase is the sig-server's base URL, from the record's
	// sigchain_url (which must be <base>/v1/sigchains/ed25519/<hex>).
	SigchainBase string
	NATSURL      string
	Inbox        string
	RegisteredAt int64
	// Relays are the circuit relays the home server advertises (canonical
	// multiaddrs ending in /p2p/<id>, at most kez.MaxRelays); entries
	// that do not parse are dropped, since relays are a hint the record's
	// signature does not cover.
	Relays []string
}

// checkRecord parses raw and checks what a client can check alone: the
// handle and key parse, the registration signature is the key's signature
// of the registration of this handle (so a server cannot bind a handle to
// a key whose holder never asked for it), the inbox is the key's, and the
// sigchain URL names the key's chain.
func checkRecord(raw kez.Record) (Record, error) {
	h, err := kez.ParseHandle(raw.Handle, "")
	if err != nil || !strings.Contains(raw.Handle, "@") {
		return Record{}, fmt.Errorf("%w: handle %q", ErrBadRecord, raw.Handle)
	}
	key, err := kez.ParsePublicKey(raw.Primary)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if !kez.VerifyRegistration(h, key, raw.RegisteredAt, raw.RegistrationSig) {
		return Record{}, fmt.Errorf("%w: the registration signature of %s does not verify", ErrBadRecord, h)
	}
	base, ok := kez.SigchainBase(raw.SigchainURL, key)
	if !ok {
		return Record{}, fmt.Errorf("%w: sigchain_url does not name the key's chain", ErrBadRecord)
	}
	if raw.NATS.Inbox != "" && raw.NATS.Inbox != kez.InboxSubject(key) {
		return Record{}, fmt.Errorf("%w: inbox is not the key's", ErrBadRecord)
	}
	return Record{Handle: h, Primary: key, SigchainBase: base, NATSURL: raw.NATS.URL,
		Inbox: raw.NATS.Inbox, RegisteredAt: raw.RegisteredAt, Relays: kez.ParseRelayAddrs(raw.Relays)}, nil
}
