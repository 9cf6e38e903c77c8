// Package callout is the NATS auth-callout service of kez-chat-server
// (its keys are natskeys'): users connect to nats-server with the
// ed25519 key behind their handle, and the callout answers with a
// short-lived user JWT that lets them see only their own inbox.
package callout
