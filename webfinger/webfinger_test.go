package webfinger_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"kez.lat/kez"
	"kez.lat/kez/webfinger"
)

func TestParseResource(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // qualified handle; "" means an error wrapping ErrBadResource
	}{
		{"ok", "acct:alice@kez.lat", "alice@kez.lat"},
		{"upper case normalised", "acct:Alice@KEZ.Lat", "alice@kez.lat"},
		{"upper case scheme", "ACCT:alice@kez.lat", "alice@kez.lat"},
		{"mixed case scheme", "Acct:alice@kez.lat", "alice@kez.lat"},
		{"other domain parses", "acct:bob@other.example", "bob@other.example"},
		{"underscore and digits", "acct:b_0b@kez.lat", "b_0b@kez.lat"},

		{"missing acct", "alice@kez.lat", ""},
		{"missing acct with at", "@alice@kez.lat", ""},
		{"http scheme", "https://kez.lat/v1/u/alice", ""},
		{"mailto scheme", "mailto:alice@kez.lat", ""},
		{"acct without colon", "acctalice@kez.lat", ""},
		{"no at", "acct:alice", ""},
		{"no at with domain", "acct:alice.kez.lat", ""},
		{"two at", "acct:alice@kez@lat", ""},
		{"two at qualified", "acct:alice@kez.lat@other.example", ""},
		{"leading at", "acct:@alice@kez.lat", ""},
		{"leading at only", "acct:@alice", ""},
		{"empty", "", ""},
		{"scheme only", "acct:", ""},
		{"at only", "acct:@", ""},
		{"empty local", "acct:@kez.lat", ""},
		{"empty domain", "acct:alice@", ""},
		{"bad local dot", "acct:al.ice@kez.lat", ""},
		{"bad local star", "acct:al*ce@kez.lat", ""},
		{"bad local gt", "acct:alice>@kez.lat", ""},
		{"bad local space", "acct:al ice@kez.lat", ""},
		{"bad local too short", "acct:a@kez.lat", ""},
		{"bad local leading digit", "acct:1alice@kez.lat", ""},
		{"bad local unicode", "acct:ålice@kez.lat", ""},
		{"bad local kelvin", "acct:\u212Aez_fan@kez.lat", ""},
		{"percent encoded", "acct:alice%40kez.lat", ""},
		{"bad domain", "acct:alice@kez", ""},
		{"domain with port", "acct:alice@kez.lat:443", ""},
		{"domain with path", "acct:alice@kez.lat/x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := webfinger.ParseResource(tt.in)
			if tt.want == "" {
				if !errors.Is(err, webfinger.ErrBadResource) {
					t.Fatalf("ParseResource(%q) = %v, %v; want ErrBadResource", tt.in, h, err)
				}
				return
			}
			if err != nil || h.String() != tt.want {
				t.Fatalf("ParseResource(%q) = %v, %v; want %s", tt.in, h, err, tt.want)
			}
		})
	}
}

// fakeLookup is a hand-written fake of the registry look-up.
type fakeLookup struct {
	LookupFn func(context.Context, kez.Handle) (kez.HandleRecord, error)
	calls    int
}

func (f *fakeLookup) Lookup(ctx context.Context, h kez.Handle) (kez.HandleRecord, error) {
	f.calls++
	return f.LookupFn(ctx, h)
}

const alicePubHex = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a" // RFC 8032 TEST 1

func aliceRecord(tb testing.TB) kez.HandleRecord {
	tb.Helper()
	h, err := kez.ParseHandle("alice", "kez.lat")
	if err != nil {
		tb.Fatal(err)
	}
	k, err := kez.ParsePublicKeyHex(alicePubHex)
	if err != nil {
		tb.Fatal(err)
	}
	return kez.HandleRecord{Handle: h, Primary: k, RegisteredAt: 1700000000, Seq: 7}
}

// newHandler returns a handler for kez.lat whose look-up knows alice only.
func newHandler(tb testing.TB) (webfinger.Handler, *fakeLookup) {
	tb.Helper()
	rec := aliceRecord(tb)
	fake := &fakeLookup{LookupFn: func(_ context.Context, h kez.Handle) (kez.HandleRecord, error) {
		if h == rec.Handle {
			return rec, nil
		}
		return kez.HandleRecord{}, kez.ErrNotFound
	}}
	return webfinger.Handler{
		Domain:      "kez.lat",
		Lookup:      fake.Lookup,
		RecordURL:   func(h kez.Handle) string { return "https://kez.lat/v1/u/" + h.Local() },
		SigchainURL: func(k kez.PublicKey) string { return "https://sig.kez.lat/v1/sigchains/ed25519/" + k.Hex() },
		Logger:      slog.New(slog.DiscardHandler),
	}, fake
}

func get(tb testing.TB, h http.Handler, rawQuery string) *httptest.ResponseRecorder {
	tb.Helper()
	req := httptest.NewRequest(http.MethodGet, "/.well-known/webfinger?"+rawQuery, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if got := w.Header().Get("Access-Control-Allow-Origin"); got != "*" {
		tb.Errorf("GET ?%s: Access-Control-Allow-Origin = %q, want *", rawQuery, got)
	}
	return w
}

func resource(s string) string { return "resource=" + url.QueryEscape(s) }

func TestHandlerOK(t *testing.T) {
	h, fake := newHandler(t)
	for _, res := range []string{"acct:alice@kez.lat", "acct:ALICE@kez.lat", "ACCT:Alice@Kez.Lat"} {
		t.Run(res, func(t *testing.T) {
			w := get(t, h, resource(res))
			if w.Code != http.StatusOK {
				t.Fatalf("status = %d, body %s; want 200", w.Code, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/jrd+json" {
				t.Errorf("Content-Type = %q, want application/jrd+json", ct)
			}
			var raw map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
				t.Fatalf("body %s: %v", w.Body, err)
			}
			for _, field := range []string{"subject", "links", "properties", "aliases"} {
				if _, ok := raw[field]; !ok {
					t.Errorf("JRD has no %q: %s", field, w.Body)
				}
			}
			var jrd webfinger.JRD
			dec := json.NewDecoder(w.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&jrd); err != nil {
				t.Fatal(err)
			}
			want := webfinger.JRD{
				Subject:    "acct:alice@kez.lat",
				Aliases:    []string{"https://kez.lat/v1/u/alice"},
				Properties: map[string]string{"https://kez.lat/ns/primary": "ed25519:" + alicePubHex},
				Links: []webfinger.Link{
					{Rel: "self", Type: "application/json", Href: "https://kez.lat/v1/u/alice"},
					{Rel: "https://kez.lat/ns/sigchain", Type: "application/json", Href: "https://sig.kez.lat/v1/sigchains/ed25519/" + alicePubHex},
				},
			}
			if !reflect.DeepEqual(jrd, want) {
				t.Errorf("JRD = %+v\nwant %+v", jrd, want)
			}
		})
	}
	if fake.calls != 3 {
		t.Errorf("Lookup called %d times, want 3", fake.calls)
	}
}

func TestHandlerLookupGetsParsedHandle(t *testing.T) {
	h, fake := newHandler(t)
	var got kez.Handle
	inner := fake.LookupFn
	fake.LookupFn = func(ctx context.Context, hd kez.Handle) (kez.HandleRecord, error) {
		got = hd
		if ctx == nil {
			t.Errorf("Lookup got a nil context")
		}
		return inner(ctx, hd)
	}
	get(t, h, resource("acct:Alice@KEZ.lat"))
	if got.String() != "alice@kez.lat" {
		t.Errorf("Lookup got %v, want alice@kez.lat", got)
	}
}

func TestHandlerRel(t *testing.T) {
	h, _ := newHandler(t)
	sigRel := url.QueryEscape(webfinger.RelSigchain)
	tests := []struct {
		name  string
		query string
		want  []string
	}{
		{"no rel", "", []string{"self", webfinger.RelSigchain}},
		{"self", "&rel=self", []string{"self"}},
		{"sigchain", "&rel=" + sigRel, []string{webfinger.RelSigchain}},
		{"both", "&rel=" + sigRel + "&rel=self", []string{"self", webfinger.RelSigchain}},
		{"unknown", "&rel=http://webfinger.net/rel/avatar", []string{}},
		{"unknown and self", "&rel=http://webfinger.net/rel/avatar&rel=self", []string{"self"}},
		{"repeated", "&rel=self&rel=self", []string{"self"}},
		{"case matters", "&rel=SELF", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := get(t, h, resource("acct:alice@kez.lat")+tt.query)
			if w.Code != http.StatusOK {
				t.Fatalf("status = %d, body %s", w.Code, w.Body)
			}
			var raw struct {
				Subject    string            `json:"subject"`
				Properties map[string]string `json:"properties"`
				Links      *[]webfinger.Link `json:"links"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
				t.Fatal(err)
			}
			if raw.Links == nil {
				t.Fatalf("links missing or null: %s", w.Body)
			}
			got := []string{}
			for _, l := range *raw.Links {
				got = append(got, l.Rel)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("rels = %q, want %q", got, tt.want)
			}
			// rel selects links only; subject and properties stay.
			if raw.Subject != "acct:alice@kez.lat" || raw.Properties[webfinger.PropPrimary] == "" {
				t.Errorf("rel filtering dropped the subject or properties: %s", w.Body)
			}
		})
	}
}

func TestHandlerErrors(t *testing.T) {
	tests := []struct {
		name   string
		query  string
		status int
		code   string
	}{
		{"missing resource", "", http.StatusBadRequest, "bad_resource"},
		{"missing resource with rel", "rel=self", http.StatusBadRequest, "bad_resource"},
		{"empty resource", "resource=", http.StatusBadRequest, "bad_resource"},
		{"two resources", resource("acct:alice@kez.lat") + "&" + resource("acct:alice@kez.lat"), http.StatusBadRequest, "bad_resource"},
		{"two different resources", resource("acct:alice@kez.lat") + "&" + resource("acct:bob@kez.lat"), http.StatusBadRequest, "bad_resource"},
		{"no scheme", resource("alice@kez.lat"), http.StatusBadRequest, "bad_resource"},
		{"http resource", resource("https://kez.lat/v1/u/alice"), http.StatusBadRequest, "bad_resource"},
		{"bad local", resource("acct:al.ice@kez.lat"), http.StatusBadRequest, "bad_resource"},
		{"two at", resource("acct:alice@kez@lat"), http.StatusBadRequest, "bad_resource"},
		{"malformed escape", "resource=%zz", http.StatusBadRequest, "bad_resource"},
		{"unknown handle", resource("acct:bob@kez.lat"), http.StatusNotFound, "not_found"},
		{"another domain", resource("acct:alice@other.example"), http.StatusNotFound, "not_found"},
		{"subdomain", resource("acct:alice@sub.kez.lat"), http.StatusNotFound, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, fake := newHandler(t)
			w := get(t, h, tt.query)
			if w.Code != tt.status {
				t.Fatalf("GET ?%s: status = %d, body %s; want %d", tt.query, w.Code, w.Body, tt.status)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var body struct{ Error, Code string }
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("error body %s: %v", w.Body, err)
			}
			if body.Code != tt.code || body.Error == "" {
				t.Errorf("error body = %+v, want code %q", body, tt.code)
			}
			if tt.status == http.StatusBadRequest && fake.calls != 0 {
				t.Errorf("Lookup called for a bad request")
			}
			if tt.name == "another domain" && fake.calls != 0 {
				t.Errorf("Lookup called for another domain's handle")
			}
		})
	}
}

func TestHandlerInternalError(t *testing.T) {
	h, fake := newHandler(t)
	var logs strings.Builder
	h.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	fake.LookupFn = func(context.Context, kez.Handle) (kez.HandleRecord, error) {
		return kez.HandleRecord{}, errors.New("kv: connection to 10.0.0.7 refused")
	}
	w := get(t, h, resource("acct:alice@kez.lat"))
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", w.Code)
	}
	if strings.Contains(w.Body.String(), "10.0.0.7") {
		t.Errorf("500 body leaks the internal error: %s", w.Body)
	}
	if !strings.Contains(logs.String(), "10.0.0.7") {
		t.Errorf("internal error not logged: %q", logs.String())
	}

	fake.LookupFn = func(context.Context, kez.Handle) (kez.HandleRecord, error) {
		return kez.HandleRecord{}, kez.ErrUnavailable
	}
	if w := get(t, h, resource("acct:alice@kez.lat")); w.Code != http.StatusServiceUnavailable {
		t.Errorf("ErrUnavailable: status = %d, want 503", w.Code)
	}
}

func FuzzParseResource(f *testing.F) {
	for _, s := range []string{
		"acct:alice@kez.lat", "acct:Alice@KEZ.lat", "ACCT:alice@kez.lat", "alice@kez.lat",
		"acct:@alice@kez.lat", "acct:alice", "acct:", "", "acct:a@b.c", "acct:al.ice@kez.lat",
		"mailto:alice@kez.lat", "acct: alice@kez.lat", "acct:\u212Aez@kez.lat",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := webfinger.ParseResource(s)
		if err != nil {
			if !errors.Is(err, webfinger.ErrBadResource) {
				t.Fatalf("ParseResource(%q) = %v, want ErrBadResource", s, err)
			}
			return
		}
		if h.IsZero() {
			t.Fatalf("ParseResource(%q) = zero handle without an error", s)
		}
		if err := kez.ValidateLocal(h.Local()); err != nil {
			t.Fatalf("ParseResource(%q) local %q: %v", s, h.Local(), err)
		}
		if err := kez.ValidateDomain(h.Domain()); err != nil {
			t.Fatalf("ParseResource(%q) domain %q: %v", s, h.Domain(), err)
		}
		again, err := webfinger.ParseResource("acct:" + h.String())
		if err != nil || again != h {
			t.Fatalf("ParseResource(%q) = %v, but acct:%v re-parses to %v, %v", s, h, h, again, err)
		}
	})
}
