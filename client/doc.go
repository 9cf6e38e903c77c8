// Package client is the kez-chat client library the CLI is a thin layer
// over. This file set starts with the NATS connection of a user: signing in
// with the user's own ed25519 key through the home server's auth callout.
package client
