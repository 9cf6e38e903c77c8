// Package streams owns the JetStream names of the servers — streams,
// subjects, KV buckets and consumers — and the code that creates them
// idempotently at start-up; the subjects a client speaks are the root
// package's wire contract (kez.InboxSubject, kez.DoorSubject, ...). It also holds the JetStream-backed stores the
// feature packages use through their own small interfaces: the registry
// log with its atomic first-come-first-served claims, the KV projection,
// the users' inboxes and their consumers, the sigchain store, and the
// rate limiters. Connect and Drain are the services' NATS connection.
package streams
