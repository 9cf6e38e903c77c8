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

	"kez.lat/kez"
	"kez.lat/kez/registry"
	"kez.lat/kez/sigchain"
	"kez.lat/kez/sigserver"
)

// chainEvents fetches key's events from seqno since on (all for 0), parsed
// but not verified: the caller extends a pinned state with them
// (sigchain.State.Extend verifies every event and the pin). sigserver's
// Client keeps its event fetch unexported; this is the same GET.
func chainEvents(ctx context.Context, hc *http.Client, base string, key kez.PublicKey, since uint64) ([]sigchain.Event, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if hc == nil {
		hc = http.DefaultClient
	}
	u := registry.SigchainURL(base, key)
	if since > 0 {
		u += "?since=" + strconv.FormatUint(since, 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", sigserver.ErrUnreachable, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, sigserver.MaxAnswerSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read answer: %v", sigserver.ErrUnreachable, err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb struct{ Error, Code string }
		_ = json.Unmarshal(body, &eb)
		return nil, &sigserver.StatusError{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error}
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '[' {
		return nil, fmt.Errorf("%w: chain answer is not a JSON array", sigchain.ErrMalformed)
	}
	var events []sigchain.Event
	if err := json.Unmarshal(body, &events); err != nil {
		if errors.Is(err, sigchain.ErrMalformed) || errors.Is(err, sigchain.ErrTooLarge) {
			return nil, fmt.Errorf("chain answer: %w", err)
		}
		return nil, fmt.Errorf("%w: chain answer: invalid JSON", sigchain.ErrMalformed)
	}
	return events, nil
}
