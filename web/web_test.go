package web_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"kez.lat/kez"
	"kez.lat/kez/web"
)

func TestClientAddr(t *testing.T) {
	for _, tt := range []struct {
		name       string
		remote     string
		xff        []string
		trustProxy bool
		want       string
	}{
		{"peer", "192.0.2.1:5555", nil, false, "192.0.2.1"},
		{"header ignored without a proxy", "192.0.2.1:5555", []string{"203.0.113.9"}, false, "192.0.2.1"},
		{"last hop behind a proxy", "10.0.0.1:5555", []string{"198.51.100.7, 203.0.113.9"}, true, "203.0.113.9"},
		{"spoofed first header ignored", "10.0.0.1:5555", []string{"6.6.6.6", "203.0.113.9"}, true, "203.0.113.9"},
		{"malformed header falls back to the peer", "10.0.0.1:5555", []string{"not an address"}, true, "10.0.0.1"},
		{"no header behind a proxy", "10.0.0.1:5555", nil, true, "10.0.0.1"},
		{"ipv6 peer", "[2001:db8::1]:443", nil, false, "2001:db8::1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := web.ClientAddr(r, tt.trustProxy); got != netip.MustParseAddr(tt.want) {
				t.Errorf("ClientAddr = %v, want %s", got, tt.want)
			}
		})
	}
}

func TestErrorsWrite(t *testing.T) {
	var logged strings.Builder
	errs := web.Errors{Table: kez.ErrorCodes(), Logger: slog.New(slog.NewTextHandler(&logged, nil))}
	for _, tt := range []struct {
		err          error
		status       int
		code         string
		body, absent string
	}{
		{fmt.Errorf("%w: must start with a letter", kez.ErrInvalidHandle), 400, "invalid_handle", "must start with a letter", ""},
		{kez.ErrRateLimited, 429, "rate_limited", "rate limited", ""},
		{fmt.Errorf("%w: nats: timeout on 10.1.2.3", kez.ErrUnavailable), 503, "unavailable", "service unavailable", "10.1.2.3"},
		{fmt.Errorf("%w: insufficient resources", kez.ErrStoreUnavailable), 503, "store_unavailable", "nothing was stored", "insufficient"},
		{errors.New("secret internal detail"), 500, "internal", "internal error", "secret"},
	} {
		w := httptest.NewRecorder()
		errs.Write(w, httptest.NewRequest(http.MethodGet, "/x", nil), tt.err)
		body := w.Body.String()
		if w.Code != tt.status || !strings.Contains(body, `"code":"`+tt.code+`"`) || !strings.Contains(body, tt.body) {
			t.Errorf("%v: %d %s", tt.err, w.Code, body)
		}
		if tt.absent != "" && strings.Contains(body, tt.absent) {
			t.Errorf("%v: answer %s leaks %q", tt.err, body, tt.absent)
		}
		if (tt.status == 429 || tt.status == 503) != (w.Header().Get("Retry-After") != "") {
			t.Errorf("%v: Retry-After %q", tt.err, w.Header().Get("Retry-After"))
		}
		if got := errs.Code(tt.err); got != tt.code {
			t.Errorf("Code(%v) = %s", tt.err, got)
		}
	}
	if !strings.Contains(logged.String(), "secret internal detail") || !strings.Contains(logged.String(), "10.1.2.3") {
		t.Errorf("causes not logged: %s", logged.String())
	}
}

func TestReadBodyLimit(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", 11)))
	if _, err := web.ReadBody(httptest.NewRecorder(), r, 10); !errors.Is(err, kez.ErrTooLarge) {
		t.Fatalf("11 bytes with a limit of 10: %v", err)
	}
	r = httptest.NewRequest(http.MethodPost, "/", strings.NewReader("0123456789"))
	if b, err := web.ReadBody(httptest.NewRecorder(), r, 10); err != nil || len(b) != 10 {
		t.Fatalf("10 bytes: %q %v", b, err)
	}
}

func TestLiveURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"http://127.0.0.1:8080/v1/readyz", "http://127.0.0.1:8080/v1/livez"},
		{"http://127.0.0.1:7879/readyz", "http://127.0.0.1:7879/livez"},
		{"http://[::1]:7878/v1/healthz?x=1", "http://[::1]:7878/v1/livez?x=1"},
	} {
		if got, err := web.LiveURL(tt.in); err != nil || got != tt.want {
			t.Errorf("LiveURL(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}
