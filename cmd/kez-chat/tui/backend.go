package tui

import (
	"context"

	"kez.lat/kez"
	"kez.lat/kez/client"
)

// Backend is what the chat asks of the client library. *client.Client
// is the real one; tests pass a fake.
type Backend interface {
	Account() (client.Account, error)
	Domain() string
	ParseHandle(s string) (kez.Handle, error)
	Contacts() ([]client.Contact, error)
	History(h kez.Handle) ([]client.Entry, error)
	SendText(ctx context.Context, h kez.Handle, text string) (client.Entry, error)
	Add(ctx context.Context, h kez.Handle) (client.Contact, bool, error)
	Verify(h kez.Handle) (client.Verification, error)
	MarkShown(h kez.Handle, key kez.PublicKey) error
	Trust(ctx context.Context, h kez.Handle, key kez.PublicKey) (client.Contact, bool, error)
	Share(ctx context.Context, h kez.Handle, path string, progress func(done int64)) (client.ShareResult, error)
	Fetch(ctx context.Context, id string, opts client.FetchOptions) (client.FetchResult, error)
	Browse(ctx context.Context, h kez.Handle, opts client.FetchOptions) (client.Listing, error)
	Files() ([]client.Shared, error)
	Unshare(ctx context.Context, id string, h kez.Handle) (client.Shared, error)
	Announcement(e client.Entry) (client.Offer, error)
	SendReceipt(ctx context.Context, h kez.Handle, r client.Receipt) error
}

var _ Backend = (*client.Client)(nil)

// EventMsg is an inbox event of [client.Client.Listen].
type EventMsg client.Event

// PresenceMsg is a contact's presence, from [client.Client.WatchPresence].
type PresenceMsg client.Presence

// ConnMsg reports the broker connection: up, or down with why.
type ConnMsg struct {
	Up  bool
	Err error
}

// NoteMsg is something the user should know that is not a message (a
// file-serving problem, a note of the client library); it shows in the
// status line.
type NoteMsg string
