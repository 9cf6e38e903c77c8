package streams

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
)

// ErrConfig is wrapped by Config.Validate errors.
var ErrConfig = errors.New("invalid streams config")

// Config sets what Setup creates.
type Config struct {
	// Replicas of every stream and bucket: 1 on a single server, 3 on a
	// three-node cluster.
	Replicas int
	// RegisterLimit is how many registration attempts one client address
	// (kez.ClientBlock: an IPv4 address, an IPv6 /64) may make per
	// RegisterWindow, across all replicas.
	RegisterLimit  int
	RegisterWindow time.Duration
	// RegisterNetLimit is how many one IPv6 /48 (kez.ClientNet) may make
	// per RegisterWindow, across all replicas; zero means NetLimitFactor
	// times RegisterLimit. IPv4 has no such tier.
	RegisterNetLimit int
	// Inbox limits: how long an unread message is kept, how many unread
	// messages one sender may hold in one inbox (its share), and the
	// largest message (also each user's NATS payload limit).
	InboxMaxAge     time.Duration
	InboxMaxMsgs    int64
	InboxMaxMsgSize int32
	// SenderMaxMsgs is how many unread messages one sender may hold
	// across all inboxes together.
	SenderMaxMsgs int64
	// InboxMaxBytes bounds the whole inbox stream (all users together).
	InboxMaxBytes int64
}

// NetLimitFactor is Config.RegisterNetLimit's default, in times the limit
// per address: a /48 registers as ten of its /64s may, enough for a site
// whose people sign up together, and 6,553 times less than its 65,536
// /64s could one at a time.
const NetLimitFactor = 10

// NetLimit returns the registration limit per IPv6 /48: RegisterNetLimit,
// or NetLimitFactor times RegisterLimit if that is zero.
func (c Config) NetLimit() int {
	if c.RegisterNetLimit > 0 {
		return c.RegisterNetLimit
	}
	return min(c.RegisterLimit, math.MaxInt/NetLimitFactor) * NetLimitFactor
}

// DefaultConfig returns the single-server defaults.
func DefaultConfig() Config {
	return Config{
		Replicas: 1, RegisterLimit: 10, RegisterWindow: time.Hour,
		InboxMaxAge: 30 * 24 * time.Hour, InboxMaxMsgs: 1_000, InboxMaxMsgSize: 64 << 10,
		SenderMaxMsgs: 10_000, InboxMaxBytes: 10 << 30,
	}
}

// Validate reports whether c is usable; errors wrap ErrConfig.
func (c Config) Validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("%w: replicas must be 1 to 5, got %d", ErrConfig, c.Replicas)
	case c.RegisterLimit < 1:
		return fmt.Errorf("%w: register limit must be at least 1", ErrConfig)
	case c.RegisterNetLimit != 0 && c.RegisterNetLimit < c.RegisterLimit:
		return fmt.Errorf("%w: register limit per IPv6 /48 (%d) must be at least the limit per address (%d), or 0", ErrConfig, c.RegisterNetLimit, c.RegisterLimit)
	case c.RegisterWindow < time.Second:
		return fmt.Errorf("%w: register window must be at least 1s", ErrConfig)
	case c.InboxMaxAge < time.Minute:
		return fmt.Errorf("%w: inbox max age must be at least 1m", ErrConfig)
	case c.InboxMaxMsgs < 1:
		return fmt.Errorf("%w: inbox max messages must be at least 1", ErrConfig)
	case c.SenderMaxMsgs < c.InboxMaxMsgs:
		return fmt.Errorf("%w: sender max messages (%d) must be at least the inbox max messages (%d)", ErrConfig, c.SenderMaxMsgs, c.InboxMaxMsgs)
	case c.InboxMaxMsgSize < 1024:
		return fmt.Errorf("%w: inbox max message size must be at least 1 KiB", ErrConfig)
	case c.InboxMaxBytes < int64(c.InboxMaxMsgSize):
		return fmt.Errorf("%w: inbox max bytes must hold at least one message", ErrConfig)
	}
	return nil
}

// defaultTimeout bounds calls whose ctx has no deadline.
const defaultTimeout = 10 * time.Second

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, defaultTimeout)
}

// Setup creates or updates every stream and bucket the home server uses.
// It is idempotent: every replica calls it at start-up. It reports
// whether the inbox stream kept a higher per-subject limit than cfg's
// (see ApplyInboxConfig), which the operator is told of.
func Setup(ctx context.Context, js jetstream.JetStream, cfg Config) (keptInboxLimit bool, err error) {
	if err := cfg.Validate(); err != nil {
		return false, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, registryStreamConfig(cfg)); err != nil {
		return false, fmt.Errorf("create stream %s: %w", RegistryStream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, registerRateLimitConfig(cfg)); err != nil {
		return false, fmt.Errorf("create stream %s: %w", RateLimitStream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, registerNetRateLimitConfig(cfg)); err != nil {
		return false, fmt.Errorf("create stream %s: %w", NetRateLimitStream, err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, quotaBucketConfig(cfg)); err != nil {
		return false, fmt.Errorf("create bucket %s: %w", QuotaBucket, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, presenceStreamConfig(cfg)); err != nil {
		return false, fmt.Errorf("create stream %s: %w", kez.PresenceStream, err)
	}
	if _, err := createProjection(ctx, js, cfg.Replicas, ""); err != nil {
		return false, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, healthStreamConfig(cfg.Replicas)); err != nil {
		return false, fmt.Errorf("create stream %s: %w", healthStream, err)
	}
	// Last: the only stream that reserves store (InboxMaxBytes), so a
	// store too small for it is measured after every other stream took
	// its share.
	kept, err := ApplyInboxConfig(ctx, js, cfg)
	if IsStoreFull(err) {
		return false, storeTooSmall(ctx, js, cfg)
	}
	return kept, err
}

// ApplyInboxConfig brings the inbox stream to cfg's configuration, and
// reports whether it kept a higher per-subject limit the stream has (see
// inboxConfig). The home server calls it again once the upgrade from the
// release before the door (door.MigrateLegacy) has moved old inboxes.
func ApplyInboxConfig(ctx context.Context, js jetstream.JetStream, cfg Config) (kept bool, err error) {
	c, kept, err := inboxConfig(ctx, js, cfg)
	if err != nil {
		return false, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, c); err != nil {
		return false, fmt.Errorf("create stream %s: %w", kez.InboxStream, err)
	}
	return kept, nil
}

// inboxConfig is inboxStreamConfig(cfg), except that it keeps the
// stream's own higher per-subject limit while a subject holds more
// messages than cfg allows (kept): lowering the limit would have the
// broker delete the oldest of them, unread. That is an upgrade from the
// release before the door, whose one subject per recipient held up to
// 10,000 messages from all senders; once door.MigrateLegacy has moved
// them to one subject per sender, and those are read down to cfg's
// limit, the limit is lowered.
func inboxConfig(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.StreamConfig, bool, error) {
	c := inboxStreamConfig(cfg)
	st, err := js.Stream(ctx, kez.InboxStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("stream %s: %w", kez.InboxStream, err)
	}
	cur := st.CachedInfo().Config.MaxMsgsPerSubject
	if cur > 0 && cur <= c.MaxMsgsPerSubject {
		return c, false, nil // not lowered
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(inboxAllSubjects))
	if err != nil {
		return c, false, fmt.Errorf("stream %s: %w", kez.InboxStream, err)
	}
	for _, n := range info.State.Subjects {
		if int64(n) > c.MaxMsgsPerSubject {
			c.MaxMsgsPerSubject = cur
			return c, true, nil
		}
	}
	return c, false, nil
}

// ErrStoreTooSmall: the JetStream store cannot reserve the bytes the inbox
// stream is configured to hold (Config.InboxMaxBytes).
var ErrStoreTooSmall = errors.New("the JetStream store is too small for the configured inbox")

// StoreTooSmallError is ErrStoreTooSmall with both sizes.
type StoreTooSmallError struct {
	Want int64 // Config.InboxMaxBytes
	Free int64 // the most the store can reserve for the inbox stream
}

func (e *StoreTooSmallError) Error() string {
	return fmt.Sprintf("%v: the inbox stream may hold %s, the JetStream store can reserve %s for it", ErrStoreTooSmall, Bytes(e.Want), Bytes(e.Free))
}

func (e *StoreTooSmallError) Unwrap() error { return ErrStoreTooSmall }

// storeTooSmall finds how many bytes the store can reserve for the inbox
// stream, which JetStream does not tell an account: it creates and
// deletes a probe stream of growing, then halving, max bytes (to 1 MiB),
// plus what the inbox stream holds reserved already if it exists.
func storeTooSmall(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	var held int64
	if st, err := js.Stream(ctx, kez.InboxStream); err == nil {
		held = max(0, st.CachedInfo().Config.MaxBytes)
	}
	fits := func(n int64) (bool, error) {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: storeProbeStream, Subjects: []string{storeProbeSubject},
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas, MaxBytes: n,
		})
		if IsStoreFull(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return true, js.DeleteStream(ctx, storeProbeStream)
	}
	const step = 1 << 20
	lo, hi := int64(0), cfg.InboxMaxBytes-held // lo fits, hi does not
	for hi-lo > step {
		mid := lo + (hi-lo)/2
		ok, err := fits(mid)
		if err != nil {
			return fmt.Errorf("%w: the inbox stream may hold %s, more than the JetStream store can reserve (measuring its room: %v)", ErrStoreTooSmall, Bytes(cfg.InboxMaxBytes), err)
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return &StoreTooSmallError{Want: cfg.InboxMaxBytes, Free: lo + held}
}

// The probe stream of storeTooSmall.
const (
	storeProbeStream  = "KEZ_STORE_PROBE"
	storeProbeSubject = "kez.storeprobe"
)

// Bytes formats n bytes for people: 10.0 GiB (10737418240 bytes).
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTP"[exp], n)
}

func registryStreamConfig(cfg Config) jetstream.StreamConfig {
	c := appendOnlyStreamConfig(RegistryStream, RegistrySubjects, cfg.Replicas)
	c.Description = "kez-chat handle registry: append-only events and first-come-first-served claims"
	c.AllowAtomicPublish = true
	c.MaxMsgSize = 8 << 10
	c.Duplicates = 2 * time.Minute
	return c
}

// appendOnlyStreamConfig is the base of the logs nothing acknowledged is
// ever removed from (the registry and the sigchains): file storage, no
// delete, no purge, and, should an operator set stream limits, new
// messages refused rather than old ones dropped.
func appendOnlyStreamConfig(name, subjects string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{subjects},
		Storage:    jetstream.FileStorage,
		Replicas:   replicas,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardNew,
		DenyDelete: true,
		DenyPurge:  true,
	}
}
