package client

import (
	"context"
	"errors"
	"fmt"

	"kez.lat/kez"
	"kez.lat/kez/sigchain"
)

// resolve looks h up on its domain's home server and fetches and verifies
// its sigchain against pin (the zero Pin for a first look).
func (c *Client) resolve(ctx context.Context, h kez.Handle, pin sigchain.Pin) (Record, sigchain.State, error) {
	home, err := c.homeOf(h)
	if err != nil {
		return Record{}, sigchain.State{}, err
	}
	rec, err := home.User(ctx, h)
	if errors.Is(err, kez.ErrNotFound) {
		return Record{}, sigchain.State{}, withHint(fmt.Errorf("@%s: no such handle on %s (%w)", h, home.BaseURL, err),
			"check the spelling; handles of another server are written @name@domain")
	}
	if err != nil {
		return Record{}, sigchain.State{}, fmt.Errorf("look up @%s: %w", h, err)
	}
	st, err := c.sig(rec.SigchainBase).Fetch(ctx, rec.Primary, pin)
	if err != nil {
		return Record{}, sigchain.State{}, fmt.Errorf("sigchain of @%s: %w", h, err)
	}
	return rec, st, nil
}

// Add resolves handle h, verifies its sigchain and pins its key (trust on
// first use). Adding a contact again refreshes it like a send would (a
// changed key is [ErrKeyChanged]); added reports whether it is new.
func (c *Client) Add(ctx context.Context, h kez.Handle) (ct Contact, added bool, err error) {
	a, _, err := c.account()
	if err != nil {
		return ct, false, err
	}
	if h == a.Handle {
		return ct, false, errors.New("that is you")
	}
	if old, err := c.p.Contact(h); err == nil {
		ct, err := c.Refresh(ctx, old)
		return ct, false, err
	} else if !errors.Is(err, ErrNotContact) {
		return ct, false, err
	}
	rec, st, err := c.resolve(ctx, h, sigchain.Pin{})
	if err != nil {
		return ct, false, err
	}
	ct = Contact{Handle: rec.Handle, Key: rec.Primary, Server: c.serverOf(h), NATSURL: rec.NATSURL,
		AddedAt: c.cfg.Now().Unix(), Chain: st}
	err = c.p.UpdateContacts(func(cs []Contact) ([]Contact, error) {
		for _, o := range cs {
			if o.Handle == h { // pinned meanwhile by a listen
				ct = o
				return cs, nil
			}
		}
		return append(cs, ct), nil
	})
	return ct, true, err
}

func (c *Client) serverOf(h kez.Handle) string {
	home, err := c.homeOf(h)
	if err != nil {
		return ""
	}
	return home.BaseURL
}

// Refresh asks the contact's server again: if it names another key for
// the handle, the new key is recorded as ChangedKey and [ErrKeyChanged]
// returned (sending stays refused until [Client.Trust]); otherwise the
// sigchain is updated from its pinned tail, and a chain that lost or
// rewrote pinned events is [ErrChainChanged]. A sig-server that cannot be
// reached leaves the pinned chain as it is.
func (c *Client) Refresh(ctx context.Context, ct Contact) (Contact, error) {
	if ct.ChangedKey != nil {
		return ct, keyChangedError(ct)
	}
	home, err := c.homeOf(ct.Handle)
	if err != nil {
		return ct, err
	}
	rec, err := home.User(ctx, ct.Handle)
	if err != nil {
		return ct, fmt.Errorf("look up @%s: %w", ct.Handle, err)
	}
	if !rec.Primary.Equal(ct.Key) {
		ct, err = c.markChanged(ct.Handle, rec.Primary)
		if err != nil {
			return ct, err
		}
		return ct, keyChangedError(ct)
	}
	st, err := c.sig(rec.SigchainBase).Update(ctx, ct.Chain)
	switch {
	case sigUnreachable(err):
		return ct, nil
	case errors.Is(err, sigchain.ErrRollback), errors.Is(err, sigchain.ErrRewritten):
		return ct, withHint(fmt.Errorf("@%s: %w: %w", ct.Handle, ErrChainChanged, err),
			"the server is hiding or rewriting what @"+ct.Handle.String()+" published; compare `kez-chat verify` out of band")
	case err != nil:
		return ct, fmt.Errorf("sigchain of @%s: %w", ct.Handle, err)
	}
	if st.Tail == ct.Chain.Tail && rec.NATSURL == ct.NATSURL {
		return ct, nil
	}
	ct.Chain, ct.NATSURL = st, rec.NATSURL
	err = c.p.UpdateContacts(func(cs []Contact) ([]Contact, error) {
		for i := range cs {
			if cs[i].Handle == ct.Handle && cs[i].Key.Equal(ct.Key) {
				cs[i].Chain, cs[i].NATSURL = st, rec.NATSURL
				ct = cs[i]
			}
		}
		return cs, nil
	})
	return ct, err
}

// markChanged records key as the changed key of contact h.
func (c *Client) markChanged(h kez.Handle, key kez.PublicKey) (Contact, error) {
	return c.p.updateContact(h, func(ct *Contact) error {
		ct.setChanged(key, c.cfg.Now().Unix())
		return nil
	})
}

func keyChangedError(ct Contact) error {
	h := "@" + ct.Handle.String()
	return withHint(fmt.Errorf("%w: %s was pinned with %s, the server now names %s", ErrKeyChanged, h, ct.Key, ct.ChangedKey),
		"sending to "+h+" is refused until you trust the new key",
		"compare the safety number with "+h+" out of band: kez-chat verify "+h,
		"then accept it: kez-chat trust "+h)
}

// notShownError is the refusal of a default trust whose changed key the
// user was not shown.
func notShownError(ct Contact) error {
	h := "@" + ct.Handle.String()
	return withHint(fmt.Errorf("%w: the server now names %s for %s, and you were not shown its safety number since; nothing was trusted", ErrNotShown, ct.ChangedKey, h),
		"compare the safety number with "+h+" out of band: kez-chat verify "+h,
		"then accept it: kez-chat trust "+h+" (or name the key you compared: --key KEY)")
}

// setAsideError is the refusal of a trust of want that would drop ct's
// recorded changed key, another one, which the user was not shown.
func setAsideError(ct Contact, want kez.PublicKey) error {
	h := "@" + ct.Handle.String()
	return withHint(fmt.Errorf("%w: %s has another changed key recorded, %s, and you were not shown its safety number; trusting %s would set it aside, and the messages it signed would stay quarantined out of sight; nothing was trusted", ErrNotShown, h, ct.ChangedKey, want),
		"see it first: kez-chat verify "+h,
		"then accept it: kez-chat trust "+h+", or keep the key you named and set it aside: kez-chat trust "+h+" --key "+want.String())
}

// MarkShown records that the user was shown the safety number of key,
// the changed key recorded for contact h (kez-chat verify calls it before
// it prints the number), so that [Client.Trust] with the zero key pins
// it. If another key is recorded by now (or none), nothing is marked and
// the error wraps [ErrNotShown]: the number about to be shown is stale.
// A later change of the recorded key clears the mark.
func (c *Client) MarkShown(h kez.Handle, key kez.PublicKey) error {
	if _, _, err := c.account(); err != nil {
		return err
	}
	_, err := c.p.updateContact(h, func(ct *Contact) error {
		if ct.ChangedKey == nil || !ct.ChangedKey.Equal(key) {
			return withHint(fmt.Errorf("%w: %s is not the changed key recorded for @%s any more", ErrNotShown, key, h),
				"look again: kez-chat verify @"+h.String())
		}
		k := key
		ct.ShownKey = &k
		return nil
	})
	return err
}

// Trust pins the key the user was shown for contact h: key, or if key is
// zero the changed key recorded for h, provided its safety number was
// shown ([Client.MarkShown]) and no other key was recorded since (else
// [ErrNotShown]), or, when no change is recorded, the pinned key itself
// (a re-check). It pins that key only if h's server names it now; if the
// server names another, that key is recorded as the change to verify and
// nothing is trusted ([ErrKeyChanged]). A key that stays the same keeps
// its sigchain pin (a rollback is still caught); a new key's chain is
// verified afresh. Messages that key signed are released from
// quarantine. A trust of another key than the changed key recorded for h
// (a named key, or the pinned one) sets that change aside, and the
// messages it signed stay quarantined: it is refused ([ErrNotShown])
// unless the user was shown that change, so that no change is dropped
// unseen, not one recorded while Trust runs either. It returns the
// contact and whether the pinned key changed.
func (c *Client) Trust(ctx context.Context, h kez.Handle, key kez.PublicKey) (Contact, bool, error) {
	if _, _, err := c.account(); err != nil {
		return Contact{}, false, err
	}
	old, err := c.p.Contact(h)
	if err != nil {
		return Contact{}, false, withHint(err, "kez-chat add @"+h.String()+" pins a new contact")
	}
	// The default is what the user was shown, never merely what was
	// recorded last: a listen or a refused trust records whatever key a
	// hostile server names next, and that key's number nobody compared.
	want, recorded := key, false
	if want.IsZero() {
		want = old.Key
		if old.ChangedKey != nil {
			want, recorded = *old.ChangedKey, true
		}
	}
	if err := old.trustRefused(want, recorded); err != nil {
		return old, false, err
	}
	home, err := c.homeOf(h)
	if err != nil {
		return old, false, err
	}
	rec, err := home.User(ctx, h)
	if err != nil {
		return old, false, fmt.Errorf("look up @%s: %w", h, err)
	}
	if !rec.Primary.Equal(want) {
		if !rec.Primary.Equal(old.Key) {
			if _, err := c.markChanged(h, rec.Primary); err != nil {
				return old, false, err
			}
		}
		return old, false, withHint(fmt.Errorf("%w: you were shown %s for @%s, the server now names %s; nothing was trusted", ErrKeyChanged, want, h, rec.Primary),
			"compare the safety number again: kez-chat verify @"+h.String())
	}
	changed := !want.Equal(old.Key)
	sig := c.sig(rec.SigchainBase)
	var st sigchain.State
	if changed {
		st, err = sig.Fetch(ctx, want, sigchain.Pin{})
	} else {
		st, err = sig.Update(ctx, old.Chain)
	}
	if err != nil {
		return old, false, fmt.Errorf("sigchain of @%s: %w", h, err)
	}
	ct, err := c.p.updateContact(h, func(ct *Contact) error {
		if !ct.Key.Equal(old.Key) {
			return fmt.Errorf("@%s was pinned again meanwhile; nothing was trusted, try again", h)
		}
		if err := ct.trustRefused(want, recorded); err != nil {
			return err // the change replaced, or another recorded, meanwhile
		}
		ct.Key, ct.Chain, ct.NATSURL = want, st, rec.NATSURL
		ct.ChangedKey, ct.ChangedAt, ct.ShownKey = nil, 0, nil
		return nil
	})
	return ct, changed, err
}

// trustRefused refuses a trust of want that ct's recorded change does not
// allow: recorded (want is the changed key, the zero key's default) while
// its safety number was not shown or another key is recorded
// ([notShownError]), or a change the user was not shown that pinning want
// would set aside ([setAsideError]).
func (ct Contact) trustRefused(want kez.PublicKey, recorded bool) error {
	if recorded && (!ct.ChangeShown() || !ct.ChangedKey.Equal(want)) {
		return notShownError(ct)
	}
	if ct.setsAside(want) {
		return setAsideError(ct, want)
	}
	return nil
}

// Verification is what the user compares out of band with a contact.
type Verification struct {
	Contact Contact
	// SafetyNumber is the safety number of the own key and the pinned
	// key; both sides see the same digits.
	SafetyNumber string
	// Fingerprint is the pinned key's fingerprint alone.
	Fingerprint string
	// ChangedSafetyNumber is the safety number with the changed key, when
	// the contact's server names another key: what to compare before
	// [Client.Trust].
	ChangedSafetyNumber string
}

// Verify returns the safety numbers of contact h.
func (c *Client) Verify(h kez.Handle) (Verification, error) {
	a, _, err := c.account()
	if err != nil {
		return Verification{}, err
	}
	ct, err := c.p.Contact(h)
	if err != nil {
		return Verification{}, withHint(err, "kez-chat add @"+h.String()+" pins it first")
	}
	v := Verification{Contact: ct, SafetyNumber: SafetyNumber(a.Primary, ct.Key), Fingerprint: Fingerprint(ct.Key)}
	if ct.ChangedKey != nil {
		v.ChangedSafetyNumber = SafetyNumber(a.Primary, *ct.ChangedKey)
	}
	return v, nil
}

// Contacts returns the pinned contacts.
func (c *Client) Contacts() ([]Contact, error) {
	if _, _, err := c.account(); err != nil {
		return nil, err
	}
	return c.p.Contacts()
}
