// Package chaos holds the fault runs of `make chaos` (build tag chaos):
// the stack as processes (bin/nats-server, bin/kez-chat-server,
// bin/kez-sig-server), faults an operator meets (a node frozen or killed
// on a 3-node cluster, kill -9 of a chat-server or sig-server replica
// under load, of a single-node broker, a store on a full disk, clock
// skew), and per run the registrations, messages and sigchain events
// acknowledged, present, lost and duplicated, and the longest gap
// between acknowledgements per replica.
// It is not part of `make test`: each run takes a minute or more.
// CHAOS_KEEP=1 keeps every run's folder (logs, stores), as a failed run's
// is kept.
package chaos
