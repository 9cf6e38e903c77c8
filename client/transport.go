package client

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// ErrInsecure: a plaintext URL (http://, nats://) to a host that is not
// this machine, without [Config.Insecure].
var ErrInsecure = errors.New("plaintext connection to a remote host refused")

// insecureHint is the advice that goes with ErrInsecure.
const insecureHint = "use https:// (HTTP) or tls:// (NATS); for a test server on a trusted network, pass --insecure (KEZ_INSECURE=1)"

// checkPlaintext returns ErrInsecure if u is a plaintext URL to a host
// other than this machine (localhost, 127.0.0.0/8, ::1). Anyone on the path
// of a plaintext connection reads and changes what it carries: handle
// records, sigchains and, for NATS, the broker's sign-in nonce.
func checkPlaintext(u *url.URL) error {
	switch strings.ToLower(u.Scheme) {
	case "http", "nats", "ws":
	default:
		return nil
	}
	if loopback(u.Hostname()) {
		return nil
	}
	return withHint(fmt.Errorf("%w: %s://%s", ErrInsecure, u.Scheme, u.Host), insecureHint)
}

// loopback reports whether host names this machine.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sigUnreachable reports whether err means the sig-server could not be
// asked, which some callers tolerate, and not that it was refused as
// plaintext, which none may.
func sigUnreachable(err error) bool {
	return errors.Is(err, ErrSigchainUnreachable) && !errors.Is(err, ErrInsecure)
}

// checkNATSURLs applies checkPlaintext to a NATS server list (URLs
// separated by commas, as nats.Connect takes them; a bare host:port is
// nats://).
func checkNATSURLs(list string) error {
	for s := range strings.SplitSeq(list, ",") {
		s = strings.TrimSpace(s)
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Errorf("NATS URL %q: %w", s, err)
		}
		if err := checkPlaintext(u); err != nil {
			return err
		}
	}
	return nil
}

// secureHTTP returns c (http.DefaultClient if nil) with a transport that
// refuses plaintext requests to remote hosts, redirects included.
func secureHTTP(c *http.Client) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	out := *c
	out.Transport = plaintextGuard{next}
	return &out
}

// plaintextGuard is an http.RoundTripper that refuses what checkPlaintext
// refuses.
type plaintextGuard struct{ next http.RoundTripper }

func (g plaintextGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := checkPlaintext(r.URL); err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	return g.next.RoundTrip(r)
}
