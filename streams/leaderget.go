package streams

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The header a KV bucket's delete and purge markers carry (nats.go's
// jetstream package keeps its names to itself).
const (
	kvOperation = "KV-Operation"
	kvDelete    = "DEL"
	kvPurge     = "PURGE"
)

// leaderLastMsg reads the last message on subject from stream's leader
// with $JS.API.STREAM.MSG.GET. jetstream's GetLastMsgForSubject uses a
// direct get when the stream allows them (KV buckets do), which any
// replica may answer, a damaged follower included; a check of what the
// leader serves must ask the leader. It returns the message data, or
// jetstream.ErrMsgNotFound, also for a KV bucket's delete or purge
// marker (the entry is gone, not empty).
func leaderLastMsg(ctx context.Context, js jetstream.JetStream, stream, subject string) ([]byte, error) {
	req, _ := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	m, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, fmt.Errorf("get %s from %s: %w", subject, stream, err)
	}
	var resp struct {
		Message *struct {
			Header []byte `json:"hdrs"`
			Data   []byte `json:"data"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, fmt.Errorf("get %s from %s: %w", subject, stream, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, jetstream.ErrMsgNotFound
	case resp.Error != nil:
		return nil, fmt.Errorf("get %s from %s: %w", subject, stream, resp.Error)
	case resp.Message == nil:
		return nil, fmt.Errorf("get %s from %s: empty answer", subject, stream)
	}
	if len(resp.Message.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return nil, fmt.Errorf("get %s from %s: headers: %w", subject, stream, err)
		}
		if op := h.Get(kvOperation); op == kvDelete || op == kvPurge {
			return nil, jetstream.ErrMsgNotFound
		}
	}
	return resp.Message.Data, nil
}
