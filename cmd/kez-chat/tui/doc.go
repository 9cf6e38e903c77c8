// Package tui is kez-chat's full-screen chat: the conversations on the
// left, the open conversation on the right, an input with slash commands
// at the bottom. [Model] is a bubbletea model over the [Backend] of the
// client library, fed live events ([EventMsg], [PresenceMsg],
// [ConnMsg]); [Run] runs it on a terminal together with what `kez-chat
// listen` runs (the inbox, file serving, presence). Everything others
// wrote is shown through package display, so it never drives the
// terminal.
package tui
