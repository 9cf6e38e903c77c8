package client

import (
	"context"
	"os"
	"testing"

	"github.com/nats-io/nats.go"

	"kez.lat/kez"
	"kez.lat/kez/blob"
	"kez.lat/kez/filecrypt"
	"kez.lat/kez/sigchain"
)

// SetKeyringCalls replaces p's OS keyring calls (nil keeps one).
func (p *Profile) SetKeyringCalls(set func(service, user, secret string) error, get func(service, user string) (string, error)) {
	kc := p.keyringCalls()
	if set != nil {
		kc.set = set
	}
	if get != nil {
		kc.get = get
	}
	p.keyring = &kc
}

// Allow is the access rule of c's node (see Client.allowFunc).
func (c *Client) Allow() func(kez.PublicKey, blob.Hash) bool { return c.allowFunc() }

// PublishAddrs makes the sigchain's p2p endpoint list addrs.
func (c *Client) PublishAddrs(ctx context.Context, addrs []string) error {
	return c.publishAddrs(ctx, addrs)
}

// LiveMsg is Inbox.liveMsg.
func (in Inbox) LiveMsg(m *nats.Msg) (InboxMsg, uint64, bool) { return in.liveMsg(m) }

// StoredPresence is storedPresence.
var StoredPresence = storedPresence

// PublishSharedFiles makes c's sigchain name ptr as its manifest,
// whatever blob ptr names: what a hostile user can publish.
func (c *Client) PublishSharedFiles(ctx context.Context, ptr sigchain.SharedFiles) error {
	_, err := c.extendChain(ctx, func(Account, sigchain.State) []chainEvent {
		return []chainEvent{{sigchain.TypeSetSharedFiles, ptr}}
	})
	return err
}

// CheckNATSURLs is checkNATSURLs.
var CheckNATSURLs = checkNATSURLs

// ReceiveFile is receiveFile: the download of a file as Fetch does it,
// with its records in dir.
func ReceiveFile(dir string, h blob.Hash, size int64, key filecrypt.Key, path string,
	run func(get func(ctx context.Context, src blob.Source, progress func(int64)) error) error) (int64, error) {
	return ReceiveFileNotice(dir, h, size, key, path, nil, run)
}

// ReceiveFileNotice is ReceiveFile, telling notice why a recorded
// download is not resumed.
func ReceiveFileNotice(dir string, h blob.Hash, size int64, key filecrypt.Key, path string, notice func(string),
	run func(get func(ctx context.Context, src blob.Source, progress func(int64)) error) error) (int64, error) {
	return receiveFile(dir, h, size, key, path, notice, func(get getFunc) error { return run(get) })
}

// ParseFetchState is parseFetchState, for the fuzz target.
func ParseFetchState(b []byte, plain int64) error {
	_, err := parseFetchState(b, plain)
	return err
}

// OutputPath is outputPath.
var OutputPath = outputPath

// SetLink makes finished downloads call link instead of os.Link until t
// ends. t must not be parallel: the link is the package's.
func SetLink(t testing.TB, link func(oldname, newname string) error) {
	t.Helper()
	old := linkFile
	linkFile = link
	t.Cleanup(func() { linkFile = old })
}

// SetSyncHistory makes the history's syncs call sync instead until t
// ends. t must not be parallel: the sync is the package's.
func SetSyncHistory(t testing.TB, sync func(*os.File) error) {
	t.Helper()
	old := syncHistory
	syncHistory = sync
	t.Cleanup(func() { syncHistory = old })
}

// Addrs returns the addresses the offer's announcement gave.
func (o Offer) Addrs() []string { return o.addrs }
