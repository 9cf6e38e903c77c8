// Package relay runs kez-relay, a circuit-relay-v2 service with raised
// per-circuit limits that serves only keys registered on the home server.
package relay
