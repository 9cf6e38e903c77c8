package client

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"kez.lat/kez"
	"kez.lat/kez/sigchain"
)

// Account is the profile's own identity, as registered.
type Account struct {
	Handle       kez.Handle    `json:"handle"`
	Primary      kez.PublicKey `json:"primary"`
	Server       string        `json:"server"`       // home server base URL
	NATSURL      string        `json:"nats_url"`     // broker, from the record
	Inbox        string        `json:"inbox"`        // own inbox subject
	SigchainURL  string        `json:"sigchain_url"` // sig-server base URL
	RegisteredAt int64         `json:"registered_at"`
	// Chain is the own sigchain as last verified (its Tail is the pin).
	Chain sigchain.State `json:"chain"`
}

// Contact is a pinned contact: the key seen first for the handle (TOFU)
// and the sigchain verified for it.
type Contact struct {
	Handle  kez.Handle    `json:"handle"`
	Key     kez.PublicKey `json:"key"`      // the pinned key
	Server  string        `json:"server"`   // base URL the handle was resolved at
	NATSURL string        `json:"nats_url"` // the contact's broker
	AddedAt int64         `json:"added_at"`
	// Chain is the contact's sigchain as last verified; its Tail is the
	// pin a later fetch must still show.
	Chain sigchain.State `json:"chain"`
	// ChangedKey is a key other than the pinned one that the contact's
	// server now names for the handle (or that signed a message from it).
	// Sending is refused while it is set; [Client.Trust] pins it.
	ChangedKey *kez.PublicKey `json:"changed_key,omitempty"`
	ChangedAt  int64          `json:"changed_at,omitempty"`
	// ShownKey is the changed key whose safety number the user was shown
	// (by kez-chat verify, see [Client.MarkShown]) while it was the
	// recorded change. Recording another ChangedKey clears it: only a
	// ShownKey equal to ChangedKey lets [Client.Trust] pin the change
	// without being named the key. Files from before it have none.
	ShownKey *kez.PublicKey `json:"shown_key,omitempty"`
}

// setChanged records key as ct's changed key, seen at now. A key other
// than the one recorded clears ShownKey: the user was not shown its
// safety number, and the next default trust must not pin it.
func (ct *Contact) setChanged(key kez.PublicKey, now int64) {
	if ct.ChangedKey != nil && ct.ChangedKey.Equal(key) {
		return
	}
	k := key
	ct.ChangedKey, ct.ChangedAt, ct.ShownKey = &k, now, nil
}

// setsAside reports whether pinning want would drop a changed key
// recorded for ct that the user was not shown: another key than want,
// whose quarantined messages would be left with no change to verify.
func (ct Contact) setsAside(want kez.PublicKey) bool {
	return ct.ChangedKey != nil && !ct.ChangedKey.Equal(want) && !ct.ChangeShown()
}

// ChangeShown reports whether the user was shown the safety number of
// ct's recorded changed key (see [Client.MarkShown]): what [Client.Trust]
// with the zero key requires.
func (ct Contact) ChangeShown() bool {
	return ct.ChangedKey != nil && ct.ShownKey != nil && ct.ShownKey.Equal(*ct.ChangedKey)
}

// contactsDoc is the JSON form of contacts.json.
type contactsDoc struct {
	V        int       `json:"v"`
	Contacts []Contact `json:"contacts"`
}

// Contacts returns the contacts sorted by handle.
func (p *Profile) Contacts() ([]Contact, error) {
	var d contactsDoc
	err := readJSON(p.path(contactsFile), &d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return d.Contacts, err
}

// Contact returns the contact of handle h; [ErrNotContact] if there is
// none.
func (p *Profile) Contact(h kez.Handle) (Contact, error) {
	cs, err := p.Contacts()
	if err != nil {
		return Contact{}, err
	}
	for _, c := range cs {
		if c.Handle == h {
			return c, nil
		}
	}
	return Contact{}, fmt.Errorf("@%s: %w", h, ErrNotContact)
}

// UpdateContacts runs fn on the contacts under the profile's exclusive
// lock and saves what it returns, so concurrent updates (a listen pinning
// a new sender while a send refreshes another contact) never lose one
// another's changes.
func (p *Profile) UpdateContacts(fn func([]Contact) ([]Contact, error)) error {
	unlock, err := p.lock(false)
	if err != nil {
		return err
	}
	defer unlock()
	return p.updateContactsLocked(fn)
}

// updateContact runs fn on contact h under the profile's exclusive lock
// (see [Profile.UpdateContacts]) and saves it unless fn fails; it returns
// the contact as saved, and [ErrNotContact] if there is none.
func (p *Profile) updateContact(h kez.Handle, fn func(*Contact) error) (Contact, error) {
	var ct Contact
	err := p.UpdateContacts(func(cs []Contact) ([]Contact, error) {
		i := slices.IndexFunc(cs, func(c Contact) bool { return c.Handle == h })
		if i < 0 {
			return cs, fmt.Errorf("@%s: %w", h, ErrNotContact)
		}
		if err := fn(&cs[i]); err != nil {
			return cs, err
		}
		ct = cs[i]
		return cs, nil
	})
	return ct, err
}

func (p *Profile) updateContactsLocked(fn func([]Contact) ([]Contact, error)) error {
	cs, err := p.Contacts()
	if err != nil {
		return err
	}
	cs, err = fn(cs)
	if err != nil {
		return err
	}
	slices.SortFunc(cs, func(a, b Contact) int { return strings.Compare(a.Handle.String(), b.Handle.String()) })
	return writeJSON(p.path(contactsFile), contactsDoc{V: 1, Contacts: cs})
}

// Direction of a history entry.
const (
	DirIn  = "in"
	DirOut = "out"
)

// Entry is one message of the history.
type Entry struct {
	Dir      string        `json:"dir"`  // DirIn or DirOut
	Peer     kez.Handle    `json:"peer"` // the contact
	PeerKey  kez.PublicKey `json:"peer_key"`
	ID       string        `json:"id"`    // message id, base64
	Dedup    string        `json:"dedup"` // DedupKey of a received message
	SentAt   int64         `json:"sent_at"`
	StoredAt int64         `json:"stored_at"`
	Type     string        `json:"type"`
	Body     string        `json:"body,omitempty"` // text of a text message
	// Plaintext is the exact decrypted JSON (kept for types this version
	// does not show).
	Plaintext json.RawMessage `json:"plaintext"`
	// Warning is set when the message was accepted with a caveat:
	// WarnKeyChanged or WarnNewContact.
	Warning string `json:"warning,omitempty"`
	// Quarantined is set (by [Client.History] and [Client.Listen], never
	// stored) on a received message signed by a key that is not the
	// contact's pinned key: it is not the contact's message until the
	// user trusts that key, so its Body and Plaintext are held back.
	// [Client.Trust] of that key releases it.
	Quarantined bool `json:"quarantined,omitempty"`
}

// quarantine withholds e's content if it came from a key other than
// pinned, the contact's pinned key.
func (e *Entry) quarantine(pinned kez.PublicKey) {
	if e.Dir == DirIn && e.Warning == WarnKeyChanged && !e.PeerKey.Equal(pinned) {
		e.Quarantined, e.Body, e.Plaintext = true, "", nil
	}
}

// Warnings of an accepted message.
const (
	// WarnKeyChanged: signed by a key other than the contact's pinned one
	// (the key the contact's server now names); quarantined until that
	// key is trusted (see [Entry.Quarantined]).
	WarnKeyChanged = "key_changed"
	// WarnNewContact: the first message of a sender, pinned on receipt.
	WarnNewContact = "new_contact"
)

// appendHistoryLocked appends entries, one JSON line each, and syncs the
// file before returning: once it returns, the messages survive a crash
// and may be acked. If it fails, the file is cut back to what it held.
// The caller holds the exclusive lock.
func (p *Profile) appendHistoryLocked(entries ...Entry) error {
	var buf bytes.Buffer
	for _, e := range entries {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode history entry: %w", err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	size, err := p.historySizeLocked()
	if err != nil {
		return err
	}
	if err := p.writeHistoryLocked(size, buf.Bytes()); err != nil {
		// All or nothing: entries whose messages stay unacked must
		// not be in the history, where the next listen would take
		// them for messages it showed already.
		return errors.Join(fmt.Errorf("history: %w", err), p.cutHistoryLocked(size))
	}
	return nil
}

// writeHistoryLocked appends data to the history, of size bytes, and
// syncs it. A line torn by a crash would swallow the first entry
// appended after it (scanHistory skips the joined line): it is ended
// first. The caller holds the exclusive lock.
func (p *Profile) writeHistoryLocked(size int64, data []byte) error {
	f, err := os.OpenFile(p.path(historyFile), os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if size > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, size-1); err != nil {
			return err
		}
		if last[0] != '\n' {
			data = append([]byte{'\n'}, data...)
		}
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := syncHistory(f); err != nil {
		return err
	}
	return f.Close()
}

// historySizeLocked returns the history's size (0 before its first
// entry). The caller holds the exclusive lock.
func (p *Profile) historySizeLocked() (int64, error) {
	fi, err := os.Stat(p.path(historyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("history: %w", err)
	}
	return fi.Size(), nil
}

// cutHistoryLocked cuts the history back to size bytes, synced: the
// entries appended after it are gone. The caller holds the exclusive
// lock.
func (p *Profile) cutHistoryLocked(size int64) error {
	f, err := os.OpenFile(p.path(historyFile), os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // never written: nothing to cut
	}
	if err == nil {
		if err = f.Truncate(size); err == nil {
			err = f.Sync()
		}
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("history: cut back: %w", err)
	}
	return nil
}

// syncHistory is (*os.File).Sync of an append to the history, a variable
// so that tests can count those syncs and make one fail.
var syncHistory = (*os.File).Sync

// History returns the stored messages in the order they were stored; with
// a non-zero peer, only those exchanged with peer.
func (p *Profile) History(peer kez.Handle) ([]Entry, error) {
	unlock, err := p.lock(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out []Entry
	err = p.scanHistory(func(e Entry) {
		if peer.IsZero() || e.Peer == peer {
			out = append(out, e)
		}
	})
	return out, err
}

// scanHistory calls fn for each entry. A torn last line (a crash in the
// middle of an append, before the sync the ack waits for) is skipped.
func (p *Profile) scanHistory(fn func(Entry)) error {
	f, err := os.Open(p.path(historyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Entry
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		fn(e)
	}
	return sc.Err()
}
