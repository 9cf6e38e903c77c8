// Package client is the kez-chat client library the kez-chat CLI is a thin
// layer over: the user's NATS sign-in through the home server's auth
// callout ([ConnectNATS]), the local profile ([Profile]: key, account,
// contacts, history), registration and recovery from the paper backup,
// TOFU-pinned contacts with their verified sigchains, and end-to-end
// encrypted 1:1 messages (kez-msg-v1) through JetStream inboxes.
//
// The library never prints: what a user should see (a dropped forgery, a
// changed key) comes back as values or errors, and the CLI shows it.
package client
