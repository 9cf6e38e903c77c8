// Package integration holds the end-to-end tests of kez-chat (build tag
// integration): the broker, kez-sig-server and kez-chat-server started
// in-process, and the kez-chat CLI driven as a user would.
package integration
