package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"kez.lat/kez"
	"kez.lat/kez/p2p"
	"kez.lat/kez/sigchain"
)

// CheckStatus is the outcome of one check of [Client.Doctor].
type CheckStatus string

// Outcomes of a check.
const (
	CheckOK   CheckStatus = "ok"
	CheckWarn CheckStatus = "warn" // works, with a caveat the user may want to fix
	CheckFail CheckStatus = "fail" // this hop is broken
	CheckSkip CheckStatus = "skip" // not run: an earlier hop failed, or it does not apply
)

// Names of the checks, in the order Doctor runs them.
const (
	CheckServer       = "server"
	CheckTLS          = "tls"
	CheckClock        = "clock"
	CheckRegistration = "registration"
	CheckSigchain     = "sigchain"
	CheckKeyStore     = "keystore"
	CheckBroker       = "broker"
	CheckRelays       = "relays"
	CheckP2P          = "p2p"
	CheckDisk         = "disk"
)

// Check is one line of the doctor's report. Its JSON form is stable.
type Check struct {
	Name   string      `json:"name"`
	Status CheckStatus `json:"status"`
	// Detail is what was found.
	Detail string `json:"detail"`
	// Fix says what to do, for a check that failed or warns.
	Fix string `json:"fix,omitempty"`
}

// DoctorOptions tune [Client.Doctor].
type DoctorOptions struct {
	// DownloadDir is the folder fetch saves to; "." if empty.
	DownloadDir string
	// MinFree is the free space the download folder needs;
	// DefaultMinFree if 0.
	MinFree int64
	// MaxSkew is how far this device's clock may be from the server's;
	// DefaultMaxSkew if 0.
	MaxSkew time.Duration
	// P2PListen are the addresses the P2P probe listens on;
	// p2p.DefaultListen if empty.
	P2PListen []string
}

// Defaults of [DoctorOptions].
const (
	// DefaultMinFree is 1 GiB.
	DefaultMinFree = 1 << 30
	// DefaultMaxSkew: the home server accepts a registration signed up
	// to 5 minutes off its clock, the sig-server events up to 10 minutes
	// ahead; 2 minutes leaves room.
	DefaultMaxSkew = 2 * time.Minute
	// warnSkew is a skew that works but shows a clock without network
	// time.
	warnSkew = 30 * time.Second
	// certWarn is how close to its expiry a certificate is reported.
	certWarn = 14 * 24 * time.Hour
	// doctorTimeout bounds each network check.
	doctorTimeout = 10 * time.Second
)

// doctor is one run of [Client.Doctor]: the checks so far and what they
// found that later checks need.
type doctor struct {
	c      *Client
	opts   DoctorOptions
	report func(Check)
	checks []Check

	base   string // home server URL
	health bool   // /v1/healthz answered
	tlsErr error  // the TLS handshake failed
	tls    *tls.ConnectionState
	date   time.Time // the server's Date
	mid    time.Time // our clock half way through that request
	acct   *Account
	rec    *Record
	key    *kez.PrivateKey
}

// Doctor checks every hop between this profile and its contacts, in
// order: the home server (TCP, then its /v1/healthz), its TLS
// certificate, this device's clock against the server's Date, the
// account's registration and sigchain as the servers serve them against
// the profile's copy, the key store, sign-in at the broker, the relays
// the home server advertises, whether peers are likely to connect to this
// device directly (a relay's AutoNAT dial-back), and free space in the
// download folder. It calls report with each check as it completes and
// returns them all; it changes nothing in the profile.
func (c *Client) Doctor(ctx context.Context, opts DoctorOptions, report func(Check)) []Check {
	if opts.DownloadDir == "" {
		opts.DownloadDir = "."
	}
	if opts.MinFree <= 0 {
		opts.MinFree = DefaultMinFree
	}
	if opts.MaxSkew <= 0 {
		opts.MaxSkew = DefaultMaxSkew
	}
	if report == nil {
		report = func(Check) {}
	}
	d := &doctor{c: c, opts: opts, report: report}
	if a, err := c.p.Account(); err == nil {
		d.acct = &a
	}
	d.server(ctx)
	d.checkTLS()
	d.clock()
	d.registration(ctx)
	d.sigchain(ctx)
	d.keystore()
	d.broker()
	d.p2p(ctx)
	d.disk()
	return d.checks
}

func (d *doctor) add(name string, st CheckStatus, detail, fix string) {
	ch := Check{Name: name, Status: st, Detail: detail, Fix: fix}
	d.checks = append(d.checks, ch)
	d.report(ch)
}

// fixOf returns err's hints as one fix, or def.
func fixOf(err error, def string) string {
	if hs := Hints(err); len(hs) > 0 {
		return strings.Join(hs, "; ")
	}
	return def
}

func (d *doctor) server(ctx context.Context) {
	base, err := d.c.server()
	if err != nil {
		d.add(CheckServer, CheckFail, err.Error(), fixOf(err, ""))
		return
	}
	d.base = base
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		d.add(CheckServer, CheckFail, fmt.Sprintf("%q is not a server URL", base), "give the home server as https://host (--server or KEZ_SERVER)")
		return
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	serverFix := "check the address (--server or KEZ_SERVER) and the network; if it is right, the server is down: tell its operator"
	dctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	start := time.Now()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		d.add(CheckServer, CheckFail, fmt.Sprintf("cannot connect to %s (%s): %v", base, addr, err), serverFix)
		return
	}
	connect := time.Since(start)
	conn.Close()

	req, err := http.NewRequestWithContext(dctx, http.MethodGet, strings.TrimRight(base, "/")+"/v1/healthz", nil)
	if err != nil {
		d.add(CheckServer, CheckFail, err.Error(), serverFix)
		return
	}
	sent := d.c.cfg.Now()
	resp, err := d.c.cfg.HTTP.Do(req)
	got := d.c.cfg.Now()
	switch {
	case errors.Is(err, ErrInsecure):
		d.add(CheckServer, CheckFail, unwrapURLError(err).Error(), insecureHint)
		return
	case err != nil && tlsError(err):
		d.tlsErr = unwrapURLError(err)
		d.add(CheckServer, CheckOK, fmt.Sprintf("%s accepts connections (%s); its TLS certificate is checked below", addr, ms(connect)), "")
		return
	case err != nil:
		d.add(CheckServer, CheckFail, fmt.Sprintf("%s accepts connections but GET /v1/healthz failed: %v", addr, unwrapURLError(err)), serverFix)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxRecordSize))
	d.tls = resp.TLS
	d.date, _ = http.ParseTime(resp.Header.Get("Date"))
	d.mid = sent.Add(got.Sub(sent) / 2)
	var h struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Build  struct {
			Version string `json:"version"`
		} `json:"build"`
	}
	jsonErr := json.Unmarshal(body, &h)
	switch {
	case resp.StatusCode == http.StatusOK && jsonErr == nil:
		d.health = true
		detail := fmt.Sprintf("%s answers /v1/healthz: ready (%s)", base, ms(got.Sub(sent)))
		if h.Build.Version != "" {
			detail += ", kez-chat-server " + h.Build.Version
		}
		d.add(CheckServer, CheckOK, detail, "")
	case resp.StatusCode == http.StatusServiceUnavailable && jsonErr == nil:
		d.health = true // it answers; the later checks tell what works
		d.add(CheckServer, CheckFail, fmt.Sprintf("%s answers but is not ready (%s %s)", base, resp.Status, strings.TrimSpace(h.Status+" "+h.Error)),
			"the server has lost its broker or is catching up after a restart; wait a minute, and if it stays so tell its operator (its /v1/healthz says which part fails)")
	default:
		d.add(CheckServer, CheckFail, fmt.Sprintf("%s answers %s to /v1/healthz, not a kez home server's answer", base, resp.Status),
			"check the address (--server or KEZ_SERVER): it should be the home server's base URL, such as https://kez.lat")
	}
}

// tlsError reports whether err is a failed TLS handshake or certificate
// check.
func tlsError(err error) bool {
	var (
		ve  *tls.CertificateVerificationError
		rec tls.RecordHeaderError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
	)
	return errors.As(err, &ve) || errors.As(err, &rec) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

func (d *doctor) checkTLS() {
	u, _ := url.Parse(d.base)
	switch {
	case d.tlsErr != nil:
		detail, fix := certProblem(d.tlsErr)
		d.add(CheckTLS, CheckFail, detail, fix)
	case u == nil || !d.health && d.tls == nil:
		d.add(CheckTLS, CheckSkip, "not checked: the home server did not answer", "")
	case u.Scheme == "http" && loopback(u.Hostname()):
		d.add(CheckTLS, CheckSkip, "not used: plain http:// to this machine needs none", "")
	case u.Scheme == "http":
		d.add(CheckTLS, CheckWarn, "plain http:// to another machine (--insecure): anyone on the path can read and change what the server says",
			"use the server's https:// address")
	case d.tls == nil || len(d.tls.PeerCertificates) == 0:
		d.add(CheckTLS, CheckSkip, "not checked: no TLS connection state", "")
	default:
		leaf := d.tls.PeerCertificates[0]
		issuer := leaf.Issuer.CommonName
		if issuer == "" && len(leaf.Issuer.Organization) > 0 {
			issuer = leaf.Issuer.Organization[0]
		}
		detail := fmt.Sprintf("valid certificate for %s from %s, until %s (%s)", u.Hostname(), issuer,
			leaf.NotAfter.UTC().Format(time.DateOnly), tls.VersionName(d.tls.Version))
		if left := leaf.NotAfter.Sub(d.c.cfg.Now()); left < certWarn {
			d.add(CheckTLS, CheckWarn, detail+fmt.Sprintf(": it expires in %s", left.Round(time.Hour)),
				"the server's operator should renew the certificate now")
			return
		}
		d.add(CheckTLS, CheckOK, detail, "")
	}
}

// certProblem explains a failed TLS handshake.
func certProblem(err error) (detail, fix string) {
	var (
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
	)
	detail = "the home server's TLS certificate is not valid: " + err.Error()
	switch {
	case errors.As(err, &ua):
		return detail, "it is not signed by an authority this device trusts: a self-signed certificate, or something on the path intercepting the connection; the operator should install one from a public CA (e.g. Let's Encrypt), and do not work around it"
	case errors.As(err, &he):
		return detail, "the certificate is for another name: use the server's own name in --server, or the operator should fix the certificate"
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return detail, "the certificate has expired, or this device's clock is wrong: check the clock; otherwise the operator must renew the certificate"
	}
	return detail, "the connection is not the server's own TLS: check --server, any proxy in between, and tell the operator"
}

func (d *doctor) clock() {
	if d.date.IsZero() {
		d.add(CheckClock, CheckSkip, "not checked: no Date from the home server", "")
		return
	}
	// Date has whole seconds: a second of difference is rounding.
	skew := d.mid.Sub(d.date)
	abs := skew.Abs()
	if abs <= time.Second {
		d.add(CheckClock, CheckOK, "this device's clock agrees with the home server's", "")
		return
	}
	way := "ahead of"
	if skew < 0 {
		way = "behind"
	}
	detail := fmt.Sprintf("this device's clock is %s %s the home server's", abs.Round(time.Second), way)
	fix := "set the clock: turn on network time (timedatectl set-ntp true on Linux; Date & Time settings on macOS and Windows)"
	switch {
	case abs > d.opts.MaxSkew:
		d.add(CheckClock, CheckFail, detail+": registrations, sigchain events and sign-ins are refused", fix)
	case abs > warnSkew:
		d.add(CheckClock, CheckWarn, detail, fix)
	default:
		d.add(CheckClock, CheckOK, detail, "")
	}
}

const noAccountFix = "kez-chat register <handle> creates an account; kez-chat recover restores one from its 24 words"

func (d *doctor) registration(ctx context.Context) {
	switch {
	case d.acct == nil:
		d.add(CheckRegistration, CheckFail, "this profile holds no account", noAccountFix)
		return
	case !d.health:
		d.add(CheckRegistration, CheckSkip, "not checked: the home server did not answer", "")
		return
	}
	a := *d.acct
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	rec, err := Home{BaseURL: d.base, HTTP: d.c.cfg.HTTP}.User(ctx, a.Handle)
	switch {
	case errors.Is(err, kez.ErrNotFound):
		d.add(CheckRegistration, CheckFail, fmt.Sprintf("@%s is not registered at %s", a.Handle, d.base),
			fmt.Sprintf("if this is the account's server (%s), it lost the registration: tell its operator; do not register the handle again with a new key (recover keeps yours)", a.Server))
		return
	case errors.Is(err, ErrBadRecord):
		d.add(CheckRegistration, CheckFail, fmt.Sprintf("the record of @%s does not check out: %v", a.Handle, err),
			"the server, or something on the path, answers what your key never signed: tell the operator")
		return
	case err != nil:
		d.add(CheckRegistration, CheckFail, fmt.Sprintf("look up @%s: %v", a.Handle, err), fixOf(err, "try again; if it persists, tell the server's operator"))
		return
	case !rec.Primary.Equal(a.Primary):
		d.add(CheckRegistration, CheckFail, fmt.Sprintf("the server binds @%s to another key (%s), not this profile's (%s)", a.Handle, rec.Primary, a.Primary),
			"someone else holds your handle on this server, or it was reset: tell the operator, and warn your contacts out of band")
		return
	}
	d.rec = &rec
	d.add(CheckRegistration, CheckOK, fmt.Sprintf("@%s is registered to this profile's key since %s", a.Handle,
		time.Unix(rec.RegisteredAt, 0).UTC().Format(time.DateOnly)), "")
}

func (d *doctor) sigchain(ctx context.Context) {
	if d.rec == nil {
		d.add(CheckSigchain, CheckSkip, "not checked: no registration record", "")
		return
	}
	a := *d.acct
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	st, err := d.c.sig(d.rec.SigchainBase).Fetch(ctx, a.Primary, a.Chain.Tail)
	switch {
	case errors.Is(err, sigchain.ErrRollback), errors.Is(err, sigchain.ErrRewritten):
		d.add(CheckSigchain, CheckFail, fmt.Sprintf("the sig-server's chain of your key differs from what this profile saw (seqno %d): %v", a.Chain.Tail.Seqno, err),
			"the sig-server lost or rewrote your events; your contacts see the same and refuse it: tell the operator")
		return
	case err != nil:
		d.add(CheckSigchain, CheckFail, fmt.Sprintf("fetch your sigchain from %s: %v", d.rec.SigchainBase, err),
			fixOf(err, "the sig-server does not answer: try again, and if it persists tell the operator"))
		return
	}
	detail := fmt.Sprintf("%d events at %s, verified; it holds this profile's copy (seqno %d)", st.Tail.Seqno, d.rec.SigchainBase, a.Chain.Tail.Seqno)
	if n := st.Tail.Seqno - a.Chain.Tail.Seqno; n > 0 {
		detail += fmt.Sprintf(" and %d newer", n)
	}
	if len(st.NATS) == 0 {
		d.add(CheckSigchain, CheckWarn, detail+", but no nats endpoint: contacts cannot find your inbox",
			"kez-chat status publishes it again")
		return
	}
	d.add(CheckSigchain, CheckOK, detail, "")
}

func (d *doctor) keystore() {
	p := d.c.p
	k, err := p.Key()
	switch {
	case errors.Is(err, ErrNoAccount):
		d.add(CheckKeyStore, CheckFail, "this profile holds no key", noAccountFix)
		return
	case errors.Is(err, ErrKeyFileMode):
		d.add(CheckKeyStore, CheckFail, err.Error(), fixOf(err, "chmod 600 "+p.path(keyFile)))
		return
	case errors.Is(err, ErrKeyring):
		d.add(CheckKeyStore, CheckFail, "the OS keyring did not give the key: "+err.Error(), fixOf(err, ""))
		return
	case err != nil:
		d.add(CheckKeyStore, CheckFail, err.Error(), fixOf(err, "recover the account from its 24 words into a new profile: kez-chat --profile NAME recover"))
		return
	case d.acct != nil && !k.Public().Equal(d.acct.Primary):
		d.add(CheckKeyStore, CheckFail, fmt.Sprintf("the key (%s) is not the account's (%s)", k.Public(), d.acct.Primary),
			"the profile is damaged: recover the account from its 24 words into a new profile (kez-chat --profile NAME recover)")
		return
	}
	d.key = k
	if where, _ := p.KeyStoreInUse(); where == KeyStoreKeyring {
		d.add(CheckKeyStore, CheckOK, "the key is in the OS keyring, which answers", "")
		return
	}
	d.add(CheckKeyStore, CheckOK, fmt.Sprintf("the key file %s is readable by you only (0600)", p.path(keyFile)), "")
}

func (d *doctor) broker() {
	if d.key == nil || d.acct == nil {
		d.add(CheckBroker, CheckSkip, "not checked: no key to sign in with", "")
		return
	}
	// The account's URL is the one every other command signs in at.
	a := *d.acct
	natsURL := a.NATSURL
	if !d.c.cfg.Insecure {
		if err := checkNATSURLs(natsURL); err != nil {
			d.add(CheckBroker, CheckFail, err.Error(), fixOf(err, ""))
			return
		}
	}
	opts := append([]nats.Option{nats.Timeout(5 * time.Second)}, d.c.cfg.NATSOptions...)
	opts = append(opts, nats.NoReconnect(), nats.Name("kez-chat doctor "+a.Primary.String()))
	nc, err := ConnectNATS(natsURL, d.key, opts...)
	switch {
	case errors.Is(err, ErrSignInUnanswered):
		d.add(CheckBroker, CheckFail, fmt.Sprintf("the broker at %s did not answer @%s's sign-in in time", natsURL, a.Handle),
			"the home server's sign-in service (kez-chat-server) is down or overloaded, or this address is throttled after many failed sign-ins: try again in a minute; if it persists, tell the operator (the auth callout's log and /readyz say which)")
		return
	case errors.Is(err, nats.ErrAuthorization):
		d.add(CheckBroker, CheckFail, fmt.Sprintf("the broker at %s refused @%s's sign-in", natsURL, a.Handle),
			"if the registration check above fails, fix that first; else too many connections of this account are open (listen, chat windows): close some; else tell the operator (the auth callout's log says why)")
		return
	case err != nil:
		d.add(CheckBroker, CheckFail, fmt.Sprintf("cannot reach the broker at %s: %v", natsURL, err),
			"is the port (4222 by default) reachable from here? a firewall or proxy may block it; else the broker is down: tell the operator")
		return
	}
	defer nc.Close()
	rtt, _ := nc.RTT()
	d.add(CheckBroker, CheckOK, fmt.Sprintf("signed in at %s as @%s (round trip %s)", nc.ConnectedUrlRedacted(), a.Handle, ms(rtt)), "")
}

// p2p checks the relays and whether peers are likely to reach this device
// directly, with one probe.
func (d *doctor) p2p(ctx context.Context) {
	var relays []string
	if d.rec != nil {
		relays = d.rec.Relays
	}
	res, err := p2p.Probe(ctx, relays, d.opts.P2PListen)
	if err != nil {
		d.add(CheckRelays, CheckSkip, "not checked: the P2P probe could not start", "")
		d.add(CheckP2P, CheckFail, "cannot listen for peers: "+err.Error(),
			"another program holds the port, or this system forbids listening; fetch and listen fail the same way: stop the other program or free the port")
		return
	}
	d.relays(res)
	d.direct(res)
}

func (d *doctor) relays(res p2p.ProbeResult) {
	switch {
	case d.rec == nil:
		d.add(CheckRelays, CheckSkip, "not checked: no registration record to name them", "")
		return
	case len(res.Relays) == 0 && d.c.cfg.RelayOnly:
		d.add(CheckRelays, CheckFail, "the home server advertises no relay, and --relay-only needs one", "drop --relay-only, or ask the operator to run kez-relay")
		return
	case len(res.Relays) == 0:
		d.add(CheckRelays, CheckWarn, "the home server advertises no relay: files move only over direct connections",
			"contacts behind NATs may not reach each other; the operator may run kez-relay (docs/operations.md, \"The relay (optional)\")")
		return
	}
	var ok []string
	var bad []string
	for _, r := range res.Relays {
		if r.Err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", r.Relay, r.Err))
		} else {
			ok = append(ok, fmt.Sprintf("%s (%s)", shortRelay(r.Relay), ms(r.Connect)))
		}
	}
	fix := "outgoing connections to the relay's port (4001 TCP and UDP by default) may be blocked here; else the relay is down: tell the operator"
	switch {
	case len(bad) == 0:
		d.add(CheckRelays, CheckOK, fmt.Sprintf("%d of %d relays reachable: %s", len(ok), len(res.Relays), strings.Join(ok, ", ")), "")
	case len(ok) == 0:
		d.add(CheckRelays, CheckFail, "no relay reachable: "+strings.Join(bad, "; "), fix)
	default:
		d.add(CheckRelays, CheckWarn, fmt.Sprintf("%d of %d relays reachable; not: %s", len(ok), len(res.Relays), strings.Join(bad, "; ")), fix)
	}
}

// shortRelay returns the relay's address without its long peer ID.
func shortRelay(r string) string {
	if i := strings.Index(r, "/p2p/"); i > 0 {
		return r[:i]
	}
	return r
}

func (d *doctor) direct(res p2p.ProbeResult) {
	if d.c.cfg.RelayOnly {
		d.add(CheckP2P, CheckOK, "off (--relay-only): every transfer goes through a relay, and contacts never see your address", "")
		return
	}
	seen := map[p2p.Reachability]bool{}
	for _, r := range res.Relays {
		if r.Err == nil {
			seen[r.Reach] = true
		}
	}
	behindNAT := "let contacts in: forward the port kez-chat listen uses (TCP and UDP) on your router, or turn on UPnP / NAT-PMP there"
	switch {
	case seen[p2p.ReachPublic]:
		d.add(CheckP2P, CheckOK, "a relay dialled this device back: contacts can connect to it directly", "")
	case seen[p2p.ReachPrivate]:
		d.add(CheckP2P, CheckWarn, "a relay could not dial this device back: it is behind a NAT or firewall; files come through the relay, or directly when hole punching gets through", behindNAT)
	case seen[p2p.ReachLocal]:
		d.add(CheckP2P, CheckOK, "the relay sees this device at a local address: peers on this network connect directly (the relay cannot tell about the internet)", "")
	case len(res.Public) > 0:
		d.add(CheckP2P, CheckOK, fmt.Sprintf("no relay could tell, but this device has a public address (%s): contacts can likely connect directly", res.Public[0]), "")
	default:
		d.add(CheckP2P, CheckWarn, "no relay could tell, and this device has only private addresses: it is behind a NAT, and direct connections depend on hole punching", behindNAT)
	}
}

func (d *doctor) disk() {
	dir, err := filepath.Abs(d.opts.DownloadDir)
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(dir); err == nil && !fi.IsDir() {
			err = errors.New("not a folder")
		}
	}
	fix := "choose a folder you can write to with fetch -o DIR (and doctor --downloads DIR)"
	if err != nil {
		d.add(CheckDisk, CheckFail, fmt.Sprintf("download folder %s: %v", d.opts.DownloadDir, err), fix)
		return
	}
	f, err := os.CreateTemp(dir, ".kez-doctor-*")
	if err != nil {
		d.add(CheckDisk, CheckFail, fmt.Sprintf("cannot write in %s: %v", dir, err), fix)
		return
	}
	f.Close()
	os.Remove(f.Name())
	free, err := freeSpace(dir)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		d.add(CheckDisk, CheckOK, fmt.Sprintf("%s is writable (free space not measured on this system)", dir), "")
	case err != nil:
		d.add(CheckDisk, CheckFail, fmt.Sprintf("free space in %s: %v", dir, err), fix)
	case free < d.opts.MinFree:
		d.add(CheckDisk, CheckFail, fmt.Sprintf("only %s free in %s (want at least %s)", gib(free), dir, gib(d.opts.MinFree)),
			"free some space there, or fetch to a larger disk with fetch -o DIR")
	default:
		d.add(CheckDisk, CheckOK, fmt.Sprintf("%s free in %s", gib(free), dir), "")
	}
}

// gib writes n bytes in GiB, the unit a disk's free space is read in.
func gib(n int64) string { return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30)) }

// ms writes d in milliseconds.
func ms(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}
