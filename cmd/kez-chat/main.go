// Command kez-chat is the kez-chat client: an account with a 24-word paper
// backup, contacts pinned on first use, and end-to-end encrypted 1:1 chat
// through the home server's JetStream inboxes. The commands live in
// package chatcmd; the work is done by package client.
package main

import (
	"os"

	"kez.lat/kez/cmd/kez-chat/chatcmd"
)

func main() { os.Exit(chatcmd.Main()) }
