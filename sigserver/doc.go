// Package sigserver is kez-sig-server: the HTTP API that stores sigchains
// in JetStream (Start wires the NATS connection, the streams and the API;
// cmd/kez-sig-server parses flags into a Config), and [Client], the
// client side that fetches chains and never trusts the server.
//
// # API
//
//	GET  /v1/sigchains/ed25519/{hex}[?since=N]  JSON array of wire events
//	POST /v1/sigchains/ed25519/{hex}/events     append one wire event
//	GET  /v1/healthz                            200 or 503, JSON details
//	GET  /metrics                               Prometheus text format
//
// GET answers the events in seqno order, in their compact wire form
// ({"payload":"<base64>","sig":"<base64>"}). since is inclusive: ?since=N
// answers the events with seqno >= N, so a client that pinned seqno N asks
// for ?since=N and sees its pinned event again, which [sigchain.State.Extend]
// requires to detect a rollback or a rewrite; since=0 (or none) is the whole
// chain. A chain with no events, and a since past the tail, answer 200 with
// []: a key that has not published anything yet has a valid, empty chain,
// and the server cannot tell it from an unknown key (404 is kept for
// unknown routes).
//
// POST takes one event, at most [sigchain.MaxEventSize] bytes, and answers
// 201 with the stored event (compact wire form) and its Location. Posting
// the event that is already the chain's tail again (a retry whose answer was
// lost) answers 200 with it and stores nothing. The event must parse, belong
// to the chain named in the URL, be signed by that key, follow the tail
// (seqno last+1, prev its hash), have a ctime no further ahead of the server
// clock than the allowed skew, and the chain must be within its limits.
// Errors are JSON {"error","code"}:
//
//	400 invalid_key      the URL's key is not 64 lowercase hex of a valid key
//	400 malformed_event  the body is not a well-formed event
//	400 wrong_chain      the event names another chain than the URL
//	400 bad_ctime        ctime before the tail's, or too far ahead
//	400 invalid_request  e.g. a since that is not a number
//	401 bad_signature    not signed by the chain's key
//	403 not_registered   the key has no handle (when registration is required)
//	409 wrong_seqno      seqno is not tail+1: the client's tail is stale
//	409 wrong_prev       prev is not the tail's hash: the client's tail is stale
//	409 conflict         another append to the chain won the race
//	413 too_large        the body is over the size limit
//	429 rate_limited     over the chain's events per window (Retry-After)
//	429 chain_full       the chain holds its maximum number of events
//	503 unavailable      the broker did not answer in time
//
// # Why appends cannot fork a chain
//
// Each chain is one subject of the KEZ_SIGCHAINS stream. A replica checks
// an event against the tail it read (with its stream sequence) and
// publishes it with Nats-Expected-Last-Subject-Sequence set to that
// sequence, so JetStream stores it only if the tail has not moved: of
// concurrent appends through any number of replicas, one per seqno wins and
// the others answer 409.
//
// The rate limit counts only events that passed every other check (parse,
// signature, link to the tail, ctime, total), so nobody but the chain's
// owner can use up its quota; a 409 after losing a race still counts.
package sigserver
