package client

import "errors"

// Errors of this package, matched with errors.Is. Errors of the home server
// are wrapped kez sentinels (kez.ErrNotFound, kez.ErrHandleTaken, ...).
var (
	// ErrNoAccount: the profile holds no account yet.
	ErrNoAccount = errors.New("no account in this profile")
	// ErrAccountExists: the profile already holds an account.
	ErrAccountExists = errors.New("this profile already holds an account")
	// ErrOtherKey: the profile holds no account but a key (saved by a
	// register or recover that stopped before the account was), and it
	// is not the key to register or recover.
	ErrOtherKey = errors.New("this profile holds another key, of an unfinished registration or recovery")
	// ErrKeyFileMode: the key file can be read or written by others.
	ErrKeyFileMode = errors.New("key file is accessible by other users")
	// ErrUnreachable: the home server (or a contact's server) could not be
	// asked; transient.
	ErrUnreachable = errors.New("server unreachable")
	// ErrSigchainUnreachable: a sig-server could not be asked (the request
	// failed, no complete answer arrived, or it answered 5xx). It is
	// transient and says nothing about the chain: every other error of
	// [Sigchains.Fetch] and [Sigchains.Update] but an [*APIError] is a
	// verdict on what the server showed (sigchain.ErrRollback,
	// ErrRewritten, ErrBadSignature, ErrMalformed, ...).
	ErrSigchainUnreachable = errors.New("sigchain server unreachable")
	// ErrBadRecord: a server answered a record that does not check out
	// (another handle or key than asked for, a registration signature that
	// does not verify, a sigchain of another key).
	ErrBadRecord = errors.New("server answered an invalid record")
	// ErrNotContact: the handle is not among the contacts.
	ErrNotContact = errors.New("not a contact")
	// ErrKeyChanged: a contact's key is not the pinned one any more;
	// sending is refused until the user trusts the new key.
	ErrKeyChanged = errors.New("contact's key changed")
	// ErrNotShown: [Client.Trust] was to pin a contact's changed key by
	// default, but the user was not shown its safety number
	// ([Client.MarkShown]) since it was recorded; nothing was trusted.
	ErrNotShown = errors.New("changed key not shown by verify")
	// ErrChainChanged: a contact's sigchain lost or rewrote an event we
	// had pinned (sigchain.ErrRollback or ErrRewritten is wrapped too).
	ErrChainChanged = errors.New("contact's sigchain lost or rewrote pinned events")
	// ErrBackupNotConfirmed: the re-typed words did not match.
	ErrBackupNotConfirmed = errors.New("re-typed word does not match the backup")
	// ErrListening: another listen (or full-screen chat) holds this
	// profile's inbox.
	ErrListening = errors.New("another kez-chat listen or chat is running on this profile")
	// ErrFederation: the contact is on another domain, whose broker this
	// version cannot deliver to yet.
	ErrFederation = errors.New("sending to another domain is not supported yet")
	// ErrBadNonce: the broker's connect nonce is not of the form
	// nats-server sends, so the identity key does not sign it.
	ErrBadNonce = errors.New("the broker's connect nonce is not a NATS nonce")
	// ErrSignInUnanswered: the broker took the connection but did not
	// answer its sign-in in time (the home server's sign-in service down
	// or overloaded, or the client's address throttled). It wraps
	// nats.ErrAuthorization as well.
	ErrSignInUnanswered = errors.New("the sign-in was not answered in time")
	// ErrSentNotRecorded: [Client.Send] delivered the message (the home
	// server stored it in the recipient's inbox) but could not record it
	// in the own history (a full disk): the message is not lost, and
	// sending it again delivers it twice. Send returns its Entry with it.
	ErrSentNotRecorded = errors.New("delivered, but not recorded in the local history")
	// ErrStore: Listen could not store received messages in the profile
	// (the disk); they stay unacked in the inbox, and Listen stops.
	ErrStore = errors.New("cannot store received messages")
	// ErrHoldSender, returned (wrapped or not) by the function that
	// [Inbox.Drain] or [Inbox.Follow] passes messages to, leaves the
	// message unread with every later message of its sender (an ack
	// removes a sender's messages up to one) and goes on with the other
	// senders'. Follow reads the held messages again later, with backoff.
	ErrHoldSender = errors.New("sender's messages held")
)

// HintError is an error with advice for the user: the CLI prints the error,
// then each hint on a "hint:" line.
type HintError struct {
	Err   error
	Hints []string
}

func (e *HintError) Error() string { return e.Err.Error() }
func (e *HintError) Unwrap() error { return e.Err }

// withHint wraps err with hints.
func withHint(err error, hints ...string) error {
	return &HintError{Err: err, Hints: hints}
}

// Hints returns the hints of every HintError in err's chain, outermost
// first.
func Hints(err error) []string {
	var out []string
	for err != nil {
		var h *HintError
		if !errors.As(err, &h) {
			break
		}
		out = append(out, h.Hints...)
		err = h.Err
	}
	return out
}
