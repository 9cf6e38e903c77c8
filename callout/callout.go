package callout

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
	"kez.lat/kez/streams"
)

// Subject is where nats-server sends authorization requests.
const Subject = "$SYS.REQ.USER.AUTH"

// requestAudience is the audience of every authorization request.
const requestAudience = "nats-authorization-request"

// xkeyHeader carries the server's curve key when the request is sealed.
const xkeyHeader = "Nats-Server-Xkey"

// Errors a request is denied with; the reason goes to our log, the client
// only ever sees "Authorization Violation".
var (
	ErrMalformed    = errors.New("malformed authorization request")
	ErrNoSignature  = errors.New("no nkey signature over the nonce")
	ErrUnregistered = errors.New("key has no handle")
	// ErrLookup: the registry did not say whether the key has a handle
	// (it timed out, its stream had no leader). Not the key's fault, so
	// not remembered as unregistered nor held against its address.
	ErrLookup = errors.New("the registry did not answer for the key")
)

// Config is the callout's configuration.
type Config struct {
	// Issuer is the account key named auth_callout.issuer in nats.conf:
	// it signs the answers and the user JWTs.
	Issuer nkeys.KeyPair
	// XKey is the curve key named auth_callout.xkey; requests are sealed to
	// it and answers sealed back. Nil accepts only unsealed requests.
	XKey nkeys.KeyPair
	// Account is where users are placed (the users' account, KEZ).
	Account string
	// TTL is the lifetime of a user JWT; the server disconnects the client
	// at expiry and the client reconnects and is authorised again. The
	// per-key cap counts a connection for at most TTL and a minute: the
	// replicas should share one TTL (one with a shorter TTL than
	// another's under-counts the other's connections).
	TTL time.Duration
	// Workers is how many requests one replica handles at once.
	Workers int
	// MaxConnsPerKey caps the connections one key may have open at once,
	// across replicas and broker nodes (0: no cap); see Service.Track.
	MaxConnsPerKey int
	Now            func() time.Time
}

// Users is what the callout needs of the registry.
type Users interface {
	// LookupKey returns the record of key's handle from memory: no round
	// trip while the server waits.
	LookupKey(kez.PublicKey) (kez.HandleRecord, bool)
	// KeyHandle returns the handle bound to key from the registry itself
	// (one round trip), or kez.ErrNotFound. It is asked only on a cache
	// miss, so that a user who registered a moment ago through another
	// replica can sign in before this replica's cache has caught up.
	KeyHandle(context.Context, kez.PublicKey) (kez.Handle, error)
}

// keyHandleTimeout is the budget of a registry look-up inside the
// broker's authorization timeout (2 s).
const keyHandleTimeout = 500 * time.Millisecond

// Service answers auth callouts.
type Service struct {
	cfg         Config
	users       Users
	permissions func(kez.PublicKey) (pub, sub []string)
	logger      *slog.Logger
	results     *prometheus.CounterVec
	duration    prometheus.Histogram

	workers  *streams.Workers
	admit    *admission
	conns    *conns
	peers    atomic.Pointer[nats.Conn] // where admitted notes go (Track's connection)
	svc      micro.Service
	nc       *nats.Conn // the connection Start serves on
	issuerPK string
	sealer   *sealer // nil without an xkey
}

// New returns a callout service. permissions gives a user's allowed
// subjects.
func New(cfg Config, users Users, permissions func(kez.PublicKey) (pub, sub []string),
	reg prometheus.Registerer, logger *slog.Logger) (*Service, error) {
	if cfg.Issuer == nil || cfg.Account == "" {
		return nil, errors.New("callout: issuer and account are required")
	}
	pk, err := cfg.Issuer.PublicKey()
	if err != nil || !nkeys.IsValidPublicAccountKey(pk) {
		return nil, errors.New("callout: issuer must be an account key")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{
		cfg: cfg, users: users, permissions: permissions,
		logger: logger.With("component", "callout"),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kez_callout_requests_total", Help: "Auth callout requests by result.",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kez_callout_duration_seconds", Help: "Time to answer an auth callout.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		workers:  streams.NewWorkers(cfg.Workers),
		admit:    newAdmission(cfg.Now, logger.With("component", "callout")),
		conns:    newConns(cfg.TTL + expiryMargin),
		issuerPK: pk,
	}
	if cfg.XKey != nil {
		if s.sealer, err = newSealer(cfg.XKey); err != nil {
			return nil, fmt.Errorf("callout: %w", err)
		}
	}
	reg.MustRegister(s.results, s.duration, s.admit.denied)
	return s, nil
}

// Start serves the callout on nc (a connection of the callout account) as
// a micro service in a queue group, so every replica shares the load.
func (s *Service) Start(nc *nats.Conn) error {
	svc, err := micro.AddService(nc, micro.Config{
		Name:        "kez-callout",
		Version:     "1.0.0",
		Description: "kez-chat auth callout",
		Endpoint: &micro.EndpointConfig{
			Subject: Subject,
			Handler: s.workers.Handler(nc, s.handle),
		},
	})
	if err != nil {
		return fmt.Errorf("callout service: %w", err)
	}
	// The subscription reaches the broker before Start returns: a
	// sign-in right after it is answered, not left to the broker's 2 s
	// callout timeout.
	if err := nc.Flush(); err != nil {
		_ = svc.Stop()
		return fmt.Errorf("callout service: %w", err)
	}
	s.svc, s.nc = svc, nc
	return nil
}

// Serving is a readiness check: it fails unless the service was started,
// is not stopped and its connection is up (streams.Serving).
func (s *Service) Serving(context.Context) error { return streams.Serving("callout", s.svc, s.nc) }

// Stop stops taking requests and waits for those in hand.
func (s *Service) Stop() {
	s.workers.Stop()
	if s.svc != nil {
		s.svc.Stop()
	}
}

// handle answers one request (on a worker: a callout must not queue
// behind a slow one).
func (s *Service) handle(r *streams.Request) {
	start := time.Now()
	resp, _, err := s.Answer(r.Data(), r.Header(xkeyHeader))
	result := "allowed"
	if err != nil {
		result = "denied"
	}
	s.results.WithLabelValues(result).Inc()
	if resp != nil {
		if err := r.Respond(resp); err != nil {
			s.logger.Warn("callout respond", "err", err)
		}
	}
	s.duration.Observe(time.Since(start).Seconds())
}

// Answer decides one request: data is the request as received (sealed to
// our xkey when serverXKey is set). It returns the answer to send (a user
// JWT, or a denial) and the user's key (on a denial, the key the client
// claimed, if it parsed); err says why a request was denied. A nil answer means the request could not be answered at all
// (the server then times out the client).
func (s *Service) Answer(data []byte, serverXKey string) ([]byte, kez.PublicKey, error) {
	resp, c, err := s.answer(data, serverXKey)
	if err != nil {
		s.admit.deny(c, err)
	}
	return resp, c.key, err
}

// answer is Answer, returning the client (its address and key, once
// known) in place of the key.
func (s *Service) answer(data []byte, serverXKey string) (resp []byte, c client, err error) {
	if serverXKey != "" {
		if s.sealer == nil {
			return nil, c, fmt.Errorf("%w: sealed request but no xkey configured", ErrMalformed)
		}
		opened, err := s.sealer.open(data, serverXKey)
		if err != nil {
			return nil, c, fmt.Errorf("%w: cannot open sealed request", ErrMalformed)
		}
		data = opened
	} else if s.sealer != nil {
		return nil, c, fmt.Errorf("%w: request not sealed to our xkey", ErrMalformed)
	}
	// Cheap checks first: the request's own signature (by the server key
	// it names, which nothing pins: only nats-server can publish here) is
	// checked only before a sign-in is allowed, so a denial costs no
	// signature check but the nonce's.
	rc, err := peekRequest(data)
	if err != nil {
		return nil, c, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !nkeys.IsValidPublicServerKey(rc.Issuer) || rc.Audience != requestAudience ||
		!nkeys.IsValidPublicServerKey(rc.Server.ID) || !nkeys.IsValidPublicUserKey(rc.UserNkey) {
		return nil, c, fmt.Errorf("%w: not a server's authorization request", ErrMalformed)
	}
	if rc.Expires > 0 && s.cfg.Now().Unix() > rc.Expires {
		return nil, c, fmt.Errorf("%w: expired request", ErrMalformed)
	}
	// The key claimed, not yet proven: its failures from this address
	// are counted apart from its neighbours' (admission).
	key, keyErr := kez.ParseNKey(rc.ConnectOptions.Nkey)
	c = newClient(rc.ClientInformation.Host, key)
	var rec kez.HandleRecord
	if err = s.admit.throttled(c); err == nil {
		if keyErr != nil {
			err = fmt.Errorf("%w: %v", ErrMalformed, keyErr)
		} else {
			rec, err = s.verify(rc, key)
		}
	}
	if err == nil && s.cfg.MaxConnsPerKey > 0 {
		h := rec.Handle.String()
		// The connect event of this connection will carry the same ids
		// (nats-server fills both from its info.ID and the client's cid).
		id := connID{rc.Server.ID, rc.ClientInformation.ID}
		if n, ok := s.conns.take(h, id, s.cfg.MaxConnsPerKey, s.cfg.Now()); !ok {
			err = fmt.Errorf("%w: @%s has %d open, at most %d", ErrTooManyConnections, h, n, s.cfg.MaxConnsPerKey)
		} else {
			// Told at once, before the answer is even signed: the
			// sooner the others count it, the narrower the window in
			// which they allow the same key past the cap.
			s.admitted(h, id)
		}
	}
	if err == nil {
		if _, verr := jwt.DecodeAuthorizationRequestClaims(string(data)); verr != nil {
			err = fmt.Errorf("%w: %v", ErrMalformed, verr)
		}
	}
	if err != nil && s.silent(err) {
		return nil, c, err
	}
	var userJWT string
	if err == nil {
		userJWT, err = s.userJWT(rc, rec)
	}
	claims := jwt.NewAuthorizationResponseClaims(rc.UserNkey)
	claims.Audience = rc.Server.ID
	if err != nil {
		claims.Error = "not authorized"
	} else {
		claims.Jwt = userJWT
	}
	tok, encErr := claims.Encode(s.cfg.Issuer)
	if encErr != nil {
		return nil, c, fmt.Errorf("encode answer: %w", encErr)
	}
	out := []byte(tok)
	if serverXKey != "" {
		if out, encErr = s.sealer.seal(out, serverXKey); encErr != nil {
			return nil, c, fmt.Errorf("seal answer: %w", encErr)
		}
	}
	return out, c, err
}

// peekRequest reads an authorization request's claims without checking
// its signature (jwt.DecodeAuthorizationRequestClaims does, later).
func peekRequest(data []byte) (*jwt.AuthorizationRequestClaims, error) {
	if len(data) > jwt.MaxTokenSize {
		return nil, errors.New("request too large")
	}
	parts := strings.Split(string(data), ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("claims encoding")
	}
	var rc jwt.AuthorizationRequestClaims
	if err := json.Unmarshal(payload, &rc); err != nil {
		return nil, fmt.Errorf("claims: %v", err)
	}
	if rc.Type != jwt.AuthorizationRequestClaim {
		return nil, errors.New("not an authorization request")
	}
	return &rc, nil
}

// silent reports whether a denial for err goes unanswered: the broker
// then refuses the client after its authorization timeout (2 s in
// nats/nats.conf), without the answer's signature, its sealing, the
// broker's opening and checking of it and the broker's warning line.
// Clients the throttle refuses get no answer, nor does anyone while this
// replica denies more than floodDenials sign-ins a second, except a
// registered key over its connection cap (a real user, who is told at
// once).
func (s *Service) silent(err error) bool {
	if errors.Is(err, ErrTooManyConnections) {
		return false
	}
	return errors.Is(err, ErrThrottled) || s.admit.flooding()
}

// verify checks the signature of key (the client's nkey) over the
// server's nonce: nats-server does not check it for an nkey it does not
// know, so this is the only check there is. Then the key must have a
// handle, whose record it returns.
func (s *Service) verify(rc *jwt.AuthorizationRequestClaims, key kez.PublicKey) (kez.HandleRecord, error) {
	rec := kez.HandleRecord{Primary: key}
	nonce, sigText := rc.ClientInformation.Nonce, rc.ConnectOptions.SignedNonce
	if nonce == "" || sigText == "" {
		return rec, ErrNoSignature
	}
	// nats.go sends raw URL base64; the server itself accepts standard too.
	sig, err := base64.RawURLEncoding.DecodeString(sigText)
	if err != nil {
		if sig, err = base64.StdEncoding.DecodeString(sigText); err != nil {
			return rec, fmt.Errorf("%w: signature encoding", kez.ErrBadSignature)
		}
	}
	if !key.Verify(kez.PurposeNATSAuth, []byte(nonce), sig) {
		return rec, fmt.Errorf("%w: nonce signature by %s", kez.ErrBadSignature, key)
	}
	// The cache's record must be this key's: a record of another key
	// filed under it (a projection that changed a handle's key: damage)
	// must never sign this key in with that key's inbox.
	if cached, ok := s.users.LookupKey(key); ok && cached.Primary.Equal(key) {
		return cached, nil
	}
	if s.admit.unregistered(key) {
		return rec, fmt.Errorf("%w: %s (a moment ago)", ErrUnregistered, key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyHandleTimeout)
	defer cancel()
	h, err := s.users.KeyHandle(ctx, key)
	if errors.Is(err, kez.ErrNotFound) {
		return rec, fmt.Errorf("%w: %s", ErrUnregistered, key)
	}
	if err != nil {
		return rec, fmt.Errorf("%w: %s: %v", ErrLookup, key, err)
	}
	rec.Handle = h
	return rec, nil
}

// userJWT issues the short-lived user JWT: subject the server's
// per-attempt user nkey (so an answer cannot be replayed for another
// connection), audience the users' account, and exactly the permissions of
// streams.UserPermissions.
func (s *Service) userJWT(rc *jwt.AuthorizationRequestClaims, rec kez.HandleRecord) (string, error) {
	key := rec.Primary
	uc := jwt.NewUserClaims(rc.UserNkey)
	uc.Audience = s.cfg.Account
	uc.Name = rec.Handle.String()
	uc.IssuedAt = s.cfg.Now().Unix()
	// Up to a tenth earlier, at random: users who signed in together (after
	// a broker restart, say) would otherwise all expire and come back for a
	// new JWT in the same second (kez-load saw callout time-outs from it).
	uc.Expires = s.cfg.Now().Add(s.cfg.TTL - rand.N(s.cfg.TTL/10+1)).Unix()
	pub, sub := s.permissions(key)
	uc.Pub.Allow.Add(pub...)
	uc.Sub.Allow.Add(sub...)
	uc.Limits.Data = jwt.NoLimit
	// Plain clients only: no leafnode or MQTT connections with a user's
	// key, whatever listeners an operator adds to the broker.
	uc.AllowedConnectionTypes.Add(jwt.ConnectionTypeStandard, jwt.ConnectionTypeWebsocket)
	tok, err := uc.Encode(s.cfg.Issuer)
	if err != nil {
		return "", fmt.Errorf("encode user jwt: %w", err)
	}
	return tok, nil
}
