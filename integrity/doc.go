// Package integrity keeps the kez servers from acting on a damaged
// append-only log: a Monitor that checks the state of each append-only
// stream (on start, on every leader change, periodically) and turns
// writes and readiness off while one is damaged, and a Merkle tree
// (RFC 6962 hashing, C2SP checkpoints) over the registry's events, whose
// checkpoints say what was written.
package integrity
