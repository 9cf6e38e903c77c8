package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

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

// APIPrefix is the JetStream API prefix of js, ending in a dot.
func APIPrefix(js jetstream.JetStream) string {
	opts := js.Options()
	switch {
	case opts.APIPrefix != "":
		return strings.TrimSuffix(opts.APIPrefix, ".") + "."
	case opts.Domain != "":
		return "$JS." + opts.Domain + ".API."
	}
	return jetstream.DefaultAPIPrefix
}

// leaderMsg is a message as a stream's leader answers a get.
type leaderMsg struct {
	Seq    uint64 `json:"seq"`
	Header []byte `json:"hdrs"`
	Data   []byte `json:"data"`
}

// leaderGet asks stream's leader for the message req names
// ($JS.API.STREAM.MSG.GET). jetstream's gets use a direct get when the
// stream allows them (KV buckets and the inbox stream do), which any
// replica may answer, a damaged or lagging follower included; a check of
// what the leader serves must ask the leader. what names the message in
// errors; no message is jetstream.ErrMsgNotFound.
func leaderGet(ctx context.Context, js jetstream.JetStream, stream string, req any, what string) (leaderMsg, error) {
	body, _ := json.Marshal(req)
	m, err := js.Conn().RequestWithContext(ctx, APIPrefix(js)+"STREAM.MSG.GET."+stream, body)
	if err != nil {
		return leaderMsg{}, fmt.Errorf("get %s from %s: %w", what, stream, err)
	}
	var resp struct {
		Message *leaderMsg          `json:"message"`
		Error   *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return leaderMsg{}, fmt.Errorf("get %s from %s: %w", what, stream, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return leaderMsg{}, jetstream.ErrMsgNotFound
	case resp.Error != nil:
		return leaderMsg{}, fmt.Errorf("get %s from %s: %w", what, stream, resp.Error)
	case resp.Message == nil || resp.Message.Seq == 0:
		return leaderMsg{}, fmt.Errorf("get %s from %s: empty answer", what, stream)
	}
	return *resp.Message, nil
}

// leaderLastMsg returns the data of the last message on subject, as
// stream's leader holds it (leaderGet), or jetstream.ErrMsgNotFound, also
// for a KV bucket's delete or purge marker (the entry is gone, not
// empty).
func leaderLastMsg(ctx context.Context, js jetstream.JetStream, stream, subject string) ([]byte, error) {
	m, err := leaderGet(ctx, js, stream, struct {
		LastFor string `json:"last_by_subj"`
	}{subject}, subject)
	if err != nil {
		return nil, err
	}
	if len(m.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(m.Header)
		if err != nil {
			return nil, fmt.Errorf("get %s from %s: headers: %w", subject, stream, err)
		}
		if op := h.Get(kvOperation); op == kvDelete || op == kvPurge {
			return nil, jetstream.ErrMsgNotFound
		}
	}
	return m.Data, nil
}

// LeaderFirstSeq returns the sequence of the first message on subject,
// as stream's leader holds it (leaderGet), or 0 if there is none.
func LeaderFirstSeq(ctx context.Context, js jetstream.JetStream, stream, subject string) (uint64, error) {
	m, err := leaderGet(ctx, js, stream, struct {
		Seq    uint64 `json:"seq"`
		NextBy string `json:"next_by_subj"`
	}{1, subject}, "the first message on "+subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	return m.Seq, err
}
