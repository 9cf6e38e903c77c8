package streams

// Stream, subject and bucket names. Nothing outside this package spells
// them.
const (
	// RegistryStream is the append-only log of registry events.
	RegistryStream = "KEZ_REGISTRY"
	// RegistrySubjects are the subjects of RegistryStream.
	RegistrySubjects = "kez.registry.>"
	// registryEvents filters the event messages: each handle's events are
	// on its own subject, the first of them also being the handle's claim.
	registryEvents = "kez.registry.handle.>"

	// HandlesBucket maps a handle's local part to its HandleRecord (JSON).
	HandlesBucket = "kez_handles"
	// KeysBucket maps a primary key's hex to its handle's local part.
	KeysBucket = "kez_keys"
	// ProjectionBucket records how far the projection has applied the
	// registry (key "registry" = last applied stream sequence).
	ProjectionBucket  = "kez_projection"
	projectionPointer = "registry"

	// RateLimitStream holds one short-lived message per rate-limited
	// request; its per-subject limit is the rate limit.
	RateLimitStream = "KEZ_RATELIMIT"
	// RateLimitSubjects are the subjects of RateLimitStream.
	RateLimitSubjects = "kez.ratelimit.>"
	// NetRateLimitStream is RateLimitStream's wider tier: one message per
	// rate-limited request from an IPv6 client, on its /48's subject,
	// with a larger per-subject limit.
	NetRateLimitStream = "KEZ_NET_RATELIMIT"
	// NetRateLimitSubjects are the subjects of NetRateLimitStream.
	NetRateLimitSubjects = "kez.net_ratelimit.>"
)

// The subjects of one registration, each claimed with
// Nats-Expected-Last-Subject-Sequence: 0 in one atomic batch. The handle
// subject carries the event itself.
func handleClaimSubject(local string) string        { return "kez.registry.handle." + local }
func keyClaimSubject(hex string) string             { return "kez.registry.key." + hex }
func skeletonClaimSubject(skel string) string       { return "kez.registry.skeleton." + skel }
func rateLimitSubject(kind, token string) string    { return "kez.ratelimit." + kind + "." + token }
func netRateLimitSubject(kind, token string) string { return "kez.net_ratelimit." + kind + "." + token }
