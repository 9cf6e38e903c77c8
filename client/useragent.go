package client

import (
	"net/http"

	"kez.lat/kez/buildinfo"
)

// userAgentHTTP returns c (http.DefaultClient if nil) with a transport
// that sets ua as the User-Agent of every request, so that servers see
// which build of the client asks (a release with a known bug, a client
// too old for a new format).
func userAgentHTTP(c *http.Client, ua string) *http.Client {
	return wrapTransport(c, func(next http.RoundTripper) http.RoundTripper { return userAgent{ua: ua, next: next} })
}

type userAgent struct {
	ua   string
	next http.RoundTripper
}

func (u userAgent) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", u.ua)
	return u.next.RoundTrip(r)
}

// defaultUserAgent is the User-Agent of a Config without one.
func defaultUserAgent() string { return buildinfo.Get().UserAgent("kez-chat") }
