package tui_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/message"
)

// fake is an in-memory Backend: contacts, history, and a record of what
// the chat asked for.
type fake struct {
	mu       sync.Mutex
	me       client.Account
	contacts []client.Contact
	history  []client.Entry
	sent     []string
	trusted  []kez.PublicKey
	receipts []string // "kind id,id to handle"
	// sendGate, if not nil, holds each SendText until it is closed.
	sendGate chan struct{}
	sendErr  error
	now      time.Time
	shared   []client.Offer // what Browse lists
	fetched  []string       // the IDs Fetch was asked for
	announce int            // Announcement calls
}

func key(b byte) kez.PublicKey {
	k, err := kez.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{b}, 64)))
	if err != nil {
		panic(err)
	}
	return k.Public()
}

func handle(s string) kez.Handle {
	h, err := kez.ParseHandle(s, "kez.test")
	if err != nil {
		panic(err)
	}
	return h
}

func (f *fake) Account() (client.Account, error) { return f.me, nil }
func (f *fake) Domain() string                   { return "kez.test" }
func (f *fake) ParseHandle(s string) (kez.Handle, error) {
	return kez.ParseHandle(s, "kez.test")
}
func (f *fake) Contacts() ([]client.Contact, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]client.Contact(nil), f.contacts...), nil
}
func (f *fake) History(h kez.Handle) ([]client.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []client.Entry
	for _, e := range f.history {
		if h.IsZero() || e.Peer == h {
			out = append(out, e)
		}
	}
	return out, nil
}
func (f *fake) SendText(ctx context.Context, h kez.Handle, text string) (client.Entry, error) {
	if f.sendGate != nil {
		<-f.sendGate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := client.Entry{Dir: client.DirOut, Peer: h, ID: "id", SentAt: f.now.Unix(), StoredAt: f.now.Unix(), Type: message.TypeText, Body: text}
	if errors.Is(f.sendErr, client.ErrSentNotRecorded) {
		f.sent = append(f.sent, text)
		return e, f.sendErr
	}
	if f.sendErr != nil {
		return client.Entry{}, f.sendErr
	}
	f.sent = append(f.sent, text)
	f.history = append(f.history, e)
	return e, nil
}
func (f *fake) Add(ctx context.Context, h kez.Handle) (client.Contact, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ct := client.Contact{Handle: h, Key: key(9)}
	f.contacts = append(f.contacts, ct)
	return ct, true, nil
}
func (f *fake) Verify(h kez.Handle) (client.Verification, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ct := range f.contacts {
		if ct.Handle == h {
			v := client.Verification{Contact: ct, SafetyNumber: "11111 22222 33333 44444 55555 66666 77777 88888 99999 00000 11111 22222"}
			if ct.ChangedKey != nil {
				v.ChangedSafetyNumber = "99999 88888 77777 66666 55555 44444 33333 22222 11111 00000 99999 88888"
			}
			return v, nil
		}
	}
	return client.Verification{}, client.ErrNotContact
}
func (f *fake) MarkShown(h kez.Handle, k kez.PublicKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, ct := range f.contacts {
		if ct.Handle == h {
			if ct.ChangedKey == nil || !ct.ChangedKey.Equal(k) {
				return client.ErrNotShown
			}
			f.contacts[i].ShownKey = &k
			return nil
		}
	}
	return client.ErrNotContact
}

// Trust is client.Client.Trust's rule: with no key, the changed key
// verify showed, while it is still the change recorded.
func (f *fake) Trust(ctx context.Context, h kez.Handle, k kez.PublicKey) (client.Contact, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, ct := range f.contacts {
		if ct.Handle != h {
			continue
		}
		if k.IsZero() {
			if !ct.ChangeShown() {
				return ct, false, client.ErrNotShown
			}
			k = *ct.ChangedKey
		}
		f.trusted = append(f.trusted, k)
		f.contacts[i].Key, f.contacts[i].ChangedKey, f.contacts[i].ShownKey = k, nil, nil
		return f.contacts[i], true, nil
	}
	return client.Contact{}, false, client.ErrNotContact
}
func (f *fake) Share(ctx context.Context, h kez.Handle, path string, progress func(int64)) (client.ShareResult, error) {
	return client.ShareResult{}, errors.New("fake: no sharing")
}
func (f *fake) Fetch(ctx context.Context, id string, opts client.FetchOptions) (client.FetchResult, error) {
	f.mu.Lock()
	f.fetched = append(f.fetched, id)
	f.mu.Unlock()
	if opts.Waiting != nil {
		opts.Waiting(handle("bob"), f.now.Add(10*time.Minute))
	}
	<-ctx.Done()
	return client.FetchResult{}, ctx.Err()
}
func (f *fake) Browse(ctx context.Context, h kez.Handle, opts client.FetchOptions) (client.Listing, error) {
	return client.Listing{Owner: h, Files: f.shared}, nil
}
func (f *fake) Files() ([]client.Shared, error) { return nil, nil }
func (f *fake) Unshare(ctx context.Context, id string, h kez.Handle) (client.Shared, error) {
	return client.Shared{}, errors.New("fake: nothing shared")
}
func (f *fake) Announcement(e client.Entry) (client.Offer, error) {
	f.mu.Lock()
	f.announce++
	f.mu.Unlock()
	return client.Offer{}, errors.New("fake: no announcements")
}

func (f *fake) SendReceipt(ctx context.Context, h kez.Handle, r client.Receipt) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.receipts = append(f.receipts, r.Kind+" "+strings.Join(r.IDs, ",")+" to "+h.Local())
	return nil
}

func (f *fake) sentReceipts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.receipts...)
}

func (f *fake) announcements() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.announce
}
