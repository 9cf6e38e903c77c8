package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"kez.lat/kez"
	"kez.lat/kez/blob"
)

// requestTimeout bounds reading a request and writing the answer's
// status; then the node's MinRate bounds the transfer.
const requestTimeout = 15 * time.Second

// serve answers one blob request.
func (n *Node) serve(s network.Stream) {
	defer s.Close()
	_ = s.SetReadDeadline(time.Now().Add(requestTimeout))
	req, err := readRequest(s)
	if err != nil {
		n.log.Debug("blob request", "peer", s.Conn().RemotePeer(), "err", err)
		_ = s.Reset()
		return
	}
	reply := func(status byte) error {
		_ = s.SetWriteDeadline(time.Now().Add(requestTimeout))
		_, err := s.Write([]byte{status})
		return err
	}
	who, err := KeyOf(s.Conn().RemotePeer())
	if err != nil || n.cfg.Store == nil || n.cfg.Allow == nil || !n.cfg.Allow(who, req.Hash) {
		_ = reply(statusNotShared)
		return
	}
	size, err := n.cfg.Store.Size(req.Hash)
	if err != nil {
		_ = reply(statusNotShared)
		return
	}
	if req.Offset >= size || req.Length > size-req.Offset {
		_ = reply(statusBadRange)
		return
	}
	// One of the peer's own slots, then one of the node's: a peer
	// reading slowly (down to the node's MinRate) holds its slots while
	// it does, and alone it must not hold them all.
	id := s.Conn().RemotePeer()
	if !n.takePeerSlot(id) {
		_ = reply(statusBusy)
		return
	}
	defer n.releasePeerSlot(id)
	select {
	case n.slots <- struct{}{}:
		defer func() { <-n.slots }()
	default:
		_ = reply(statusBusy)
		return
	}
	if err := reply(statusOK); err != nil {
		return
	}
	n.log.Info("serving blob", "peer", who, "blob", req.Hash, "offset", req.Offset, "length", req.Length)
	// Bao writes a 64-byte tree node or a 16 KiB group at a time; each
	// write to a stream is a muxer frame, a TLS record and a system
	// call, so they go out sendBuf at a time.
	w := bufio.NewWriterSize(&pacedWriter{s: s, p: newPacer(servingRate(n.cfg.MinRate), time.Now())}, sendBuf)
	err = n.cfg.Store.WriteSlice(w, req.Hash, req.Offset, req.Length)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		n.log.Info("blob transfer stopped", "peer", who, "blob", req.Hash, "err", err)
		_ = s.Reset()
	}
}

// takePeerSlot reports whether peer id may be served one more transfer
// (fewer than MaxPeerTransfers are being served to it), and counts it.
func (n *Node) takePeerSlot(id peer.ID) bool {
	n.servingMu.Lock()
	defer n.servingMu.Unlock()
	if n.serving[id] >= n.cfg.MaxPeerTransfers {
		return false
	}
	n.serving[id]++
	return true
}

// releasePeerSlot counts a transfer to peer id as done.
func (n *Node) releasePeerSlot(id peer.ID) {
	n.servingMu.Lock()
	defer n.servingMu.Unlock()
	if n.serving[id]--; n.serving[id] <= 0 {
		delete(n.serving, id)
	}
}

// sendBuf is the size of the writes of a blob transfer to its stream.
// The pacer counts a write once it returns, up to sendBuf late: small
// against a window's bytes, large enough that a transfer does not cost
// a frame and a system call per few KiB (64 KiB moves as fast as 256 KiB
// did over loopback; 16 KiB at half the speed).
const sendBuf = 64 << 10

// servingWindows is how many windows of its MinRate a serving node
// judges a peer's reads over (at the same rate): it sees them only as
// the stream's flow control lets more bytes go, in steps of half the
// peer's receive window (128 KiB at first with yamux, a quarter of it
// with QUIC), so that a peer reading 64 KiB every 30 s steadily would
// seem to read nothing in some 30 s. Over four windows, a reader at 1.75
// times the default minimum or more is never stopped (the steps and
// sendBuf are 192 KiB of the 256 KiB it must read), and one that reads
// nothing is stopped four windows after its receive window filled.
const servingWindows = 4

// servingRate is the rule a serving node holds its peers' reads to, for
// a node whose MinRate is rate.
func servingRate(rate MinRate) MinRate {
	rate = rate.orDefault()
	rate.Bytes *= servingWindows
	rate.Window *= servingWindows
	return rate
}

// pacedWriter writes a transfer to its stream, stopping it with
// ErrStalled once the peer reads slower than the pacer allows.
type pacedWriter struct {
	s network.Stream
	p *pacer
}

func (w *pacedWriter) Write(b []byte) (int, error) {
	return paced(w.p, w.s, "read", w.s.SetWriteDeadline, w.s.Write, b)
}

// paced does one read or write of a transfer on stream s (do, on b),
// with the pacer's deadline set by setDeadline, and counts the bytes it
// moved. Once the deadline passed, before or during it, it returns
// ErrStalled, which says what the peer did too slowly ("sent", "read").
func paced(p *pacer, s network.Stream, what string, setDeadline func(time.Time) error, do func([]byte) (int, error), b []byte) (int, error) {
	dl := p.deadline()
	if !time.Now().Before(dl) {
		return 0, p.stalled(s.Conn().RemotePeer(), what, time.Now())
	}
	_ = setDeadline(dl)
	n, err := do(b)
	now := time.Now()
	p.add(now, n)
	if err != nil && !now.Before(dl) {
		err = p.stalled(s.Conn().RemotePeer(), what, now)
	}
	return n, err
}

// Peer returns the node of the user with key, reachable at addrs (from
// their sigchain or an announcement; relay circuit addresses included),
// as a [blob.Source] for [blob.Store.Fetch].
func (n *Node) Peer(key kez.PublicKey, addrs []string) (blob.Source, error) {
	id, err := PeerID(key)
	if err != nil {
		return nil, err
	}
	ai := peer.AddrInfo{ID: id}
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			continue // one bad address does not spoil the others
		}
		if pid, err := peer.IDFromP2PAddr(a); err == nil && pid == id {
			a, _ = ma.SplitLast(a) // our own /p2p/<id> suffix
		}
		ai.Addrs = append(ai.Addrs, a)
	}
	return &remote{n: n, ai: ai}, nil
}

// remote is a peer's node as a blob source.
type remote struct {
	n  *Node
	ai peer.AddrInfo
}

// dialTimeout bounds connecting to a peer.
const dialTimeout = 20 * time.Second

// ErrUnreachable: no connection to the peer's node could be made (it is
// offline, or none of its addresses can be reached).
var ErrUnreachable = errors.New("peer unreachable")

// Slice implements blob.Source: it connects to the peer (directly or
// through a relay), asks for [off, off+n) of blob h and returns the
// stream once the peer agreed to send it. A peer busy with other
// transfers (ErrBusy) is asked again, after a pause that grows, for up
// to busyWait; then, or when ctx ends meanwhile, it returns ErrBusy.
func (r *remote) Slice(ctx context.Context, h blob.Hash, off, n int64) (io.ReadCloser, error) {
	deadline := time.Now().Add(busyWait)
	for pause := busyPause; ; pause = min(2*pause, maxBusyPause) {
		rc, err := r.slice(ctx, h, off, n)
		if !errors.Is(err, ErrBusy) || time.Now().Add(pause).After(deadline) {
			return rc, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
		case <-time.After(pause):
		}
	}
}

// How long and how often Slice asks a busy peer again: a transfer that
// ends frees its slot at once, and the peer's other transfers may last
// minutes.
const (
	busyWait     = 2 * time.Minute
	busyPause    = 250 * time.Millisecond
	maxBusyPause = 4 * time.Second
)

// slice is one request of Slice.
func (r *remote) slice(ctx context.Context, h blob.Hash, off, n int64) (io.ReadCloser, error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	// A relayed connection is "limited"; our relays lift the limits for
	// file transfer, so streams may use it.
	dctx = network.WithAllowLimitedConn(dctx, "kez blob transfer")
	if err := r.n.h.Connect(dctx, r.ai); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	s, err := r.n.h.NewStream(dctx, r.ai.ID, BlobProtocol)
	if err != nil {
		return nil, fmt.Errorf("%w: open stream: %w", ErrUnreachable, err)
	}
	// The first byte of the slice is due FirstByte after the request:
	// the request, the answer and the first data share that deadline.
	p := newPacer(r.n.cfg.MinRate, time.Now())
	_ = s.SetDeadline(p.deadline())
	// fail resets the stream and returns err, or ErrStalled if the
	// deadline passed (which made the stream fail).
	fail := func(err error) error {
		_ = s.Reset()
		if now := time.Now(); !now.Before(p.deadline()) {
			return p.stalled(r.ai.ID, "sent", now)
		}
		return err
	}
	if _, err := s.Write(request{Hash: h, Offset: off, Length: n}.marshal()); err != nil {
		return nil, fail(fmt.Errorf("send request: %w", err))
	}
	if err := s.CloseWrite(); err != nil {
		return nil, fail(fmt.Errorf("send request: %w", err))
	}
	var st [1]byte
	if _, err := io.ReadFull(s, st[:]); err != nil {
		return nil, fail(fmt.Errorf("%w: no answer: %w", ErrProtocol, err))
	}
	if err := statusError(st[0]); err != nil {
		_ = s.Reset()
		return nil, err
	}
	return &streamReader{s: s, n: r.n, p: p, relayed: isRelayed(s.Conn())}, nil
}

// ErrUpgraded: a direct connection to the peer came up (hole punching)
// while a transfer ran through a relay. The transfer stops so that it can
// go on over the direct connection: fetching again resumes from what was
// verified, on a stream libp2p opens on the direct connection.
var ErrUpgraded = errors.New("a direct connection to the peer replaced the relayed one")

// upgradeCheck is how often a relayed transfer looks for a direct
// connection to its peer.
const upgradeCheck = 100 * time.Millisecond

// streamReader reads a transfer, stopping it with ErrStalled once the
// peer sends slower than the pacer allows; Close resets the stream so
// that a blocked Read returns. A transfer over a relayed connection
// stops with ErrUpgraded once a direct one exists.
type streamReader struct {
	s       network.Stream
	n       *Node
	p       *pacer
	relayed bool
	checked time.Time
}

func (r *streamReader) Read(b []byte) (int, error) {
	if r.relayed && time.Since(r.checked) >= upgradeCheck {
		r.checked = time.Now()
		if r.n.direct(r.s.Conn().RemotePeer()) {
			return 0, ErrUpgraded
		}
	}
	return paced(r.p, r.s, "sent", r.s.SetReadDeadline, r.s.Read, b)
}

func (r *streamReader) Close() error { return r.s.Reset() }
