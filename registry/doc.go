// Package registry is the handle registry of kez-chat-server: it verifies
// and stores registrations as events in the registry log, projects the
// log into the KV projection exactly once and in order, and answers
// look-ups from a local cache kept current by a watch on the projection.
//
// It speaks domain types and small interfaces ([Log], [Projection],
// [Limiter]); package streams implements them on JetStream.
package registry
