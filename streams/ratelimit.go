package streams

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
)

// RateLimiter limits requests per client address with the KEZ_RATELIMIT
// stream: each request is a message on the client's subject, the stream
// keeps a subject's messages for the window (max age) and refuses more
// than the limit per subject (discard new per subject). The count lives
// in JetStream, so the limit holds across every replica.
type RateLimiter struct {
	js   jetstream.JetStream
	kind string
}

// NewRateLimiter returns a limiter of one kind of request (such as
// RateLimitRegister) on the stream Setup created.
func NewRateLimiter(js jetstream.JetStream, kind string) *RateLimiter {
	return &RateLimiter{js: js, kind: kind}
}

// RateLimitRegister is the kind of limit on registration attempts.
const RateLimitRegister = "register"

// Allow records one request from addr and returns
// kez.ErrRateLimited if addr is over its limit. IPv6 clients are limited
// per /64, the block one subscriber usually holds.
func (l *RateLimiter) Allow(ctx context.Context, addr netip.Addr) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	_, err := l.js.Publish(ctx, rateLimitSubject(l.kind, clientToken(addr)), nil)
	if err == nil {
		return nil
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum messages per subject exceeded") {
		return kez.ErrRateLimited
	}
	return fmt.Errorf("%w: rate limiter: %v", kez.ErrUnavailable, err)
}

// clientToken is a subject-safe token for an address: hex of the IPv4
// address or of the IPv6 /64 prefix.
func clientToken(addr netip.Addr) string {
	addr = addr.Unmap()
	if addr.Is4() {
		b := addr.As4()
		return hex.EncodeToString(b[:])
	}
	b := addr.As16()
	return hex.EncodeToString(b[:8])
}
