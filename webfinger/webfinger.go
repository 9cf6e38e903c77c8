// Package webfinger answers RFC 7033 WebFinger queries for the home
// domain's handles: GET /.well-known/webfinger?resource=acct:alice@kez.lat
// returns a JRD linking the handle record, the primary key and the
// sigchain.
package webfinger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"kez.lat/kez"
	"kez.lat/kez/web"
)

// ContentType is the JRD media type (RFC 7033 §10.2).
const ContentType = "application/jrd+json"

// Link relations of a kez JRD.
const (
	RelSigchain = "https://kez.lat/ns/sigchain"
	RelRecord   = "self"
	PropPrimary = "https://kez.lat/ns/primary"
)

// ErrBadResource is wrapped by ParseResource errors.
var ErrBadResource = errors.New("bad webfinger resource")

// ParseResource parses an acct: URI (acct:alice@kez.lat) into a handle.
// The scheme is matched without regard to case; the user part must be a
// valid local part and the host a valid domain; a missing scheme, another
// scheme or a malformed handle wraps ErrBadResource.
func ParseResource(resource string) (kez.Handle, error) {
	// RFC 3986 §3.1: schemes are case-insensitive.
	const scheme = "acct:"
	if len(resource) < len(scheme) || !strings.EqualFold(resource[:len(scheme)], scheme) {
		return kez.Handle{}, fmt.Errorf("%w: want acct:<handle>@<domain>", ErrBadResource)
	}
	acct := resource[len(scheme):]
	if strings.Count(acct, "@") != 1 || strings.HasPrefix(acct, "@") {
		return kez.Handle{}, fmt.Errorf("%w: want acct:<handle>@<domain>", ErrBadResource)
	}
	h, err := kez.ParseHandle(acct, "")
	if err != nil {
		return kez.Handle{}, fmt.Errorf("%w: %v", ErrBadResource, err)
	}
	return h, nil
}

// JRD is a JSON Resource Descriptor (RFC 7033 §4.4).
type JRD struct {
	Subject    string            `json:"subject"`
	Aliases    []string          `json:"aliases,omitempty"`
	Properties map[string]string `json:"properties,omitempty"`
	Links      []Link            `json:"links"`
}

// Link is one JRD link.
type Link struct {
	Rel  string `json:"rel"`
	Type string `json:"type,omitempty"`
	Href string `json:"href"`
}

// Handler serves /.well-known/webfinger.
type Handler struct {
	// Domain is the home domain; other domains answer 404.
	Domain string
	// Lookup returns a handle's record or kez.ErrNotFound.
	Lookup func(context.Context, kez.Handle) (kez.HandleRecord, error)
	// RecordURL returns the URL of a handle's record (GET /v1/u/{handle}).
	RecordURL func(kez.Handle) string
	// SigchainURL returns the URL of a key's sigchain.
	SigchainURL func(kez.PublicKey) string
	Logger      *slog.Logger
}

var errorTable = append([]kez.ErrorCode{{Err: ErrBadResource, Status: http.StatusBadRequest, Code: "bad_resource"}}, kez.ErrorCodes()...)

func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// RFC 7033 §5: servers should allow any origin.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	errs := web.Errors{Table: errorTable, Logger: h.Logger}
	q := r.URL.Query()
	if len(q["resource"]) != 1 {
		errs.Write(w, r, fmt.Errorf("%w: exactly one resource parameter is required", ErrBadResource))
		return
	}
	handle, err := ParseResource(q.Get("resource"))
	if err != nil {
		errs.Write(w, r, err)
		return
	}
	if handle.Domain() != h.Domain {
		errs.Write(w, r, kez.ErrNotFound)
		return
	}
	rec, err := h.Lookup(r.Context(), handle)
	if err != nil {
		errs.Write(w, r, err)
		return
	}
	jrd := JRD{
		Subject:    "acct:" + rec.Handle.String(),
		Aliases:    []string{h.RecordURL(rec.Handle)},
		Properties: map[string]string{PropPrimary: rec.Primary.String()},
		Links: []Link{
			{Rel: RelRecord, Type: "application/json", Href: h.RecordURL(rec.Handle)},
			{Rel: RelSigchain, Type: "application/json", Href: h.SigchainURL(rec.Primary)},
		},
	}
	// RFC 7033 §4.3: rel parameters select links.
	if rels := q["rel"]; len(rels) > 0 {
		var kept []Link
		for _, l := range jrd.Links {
			for _, rel := range rels {
				if l.Rel == rel {
					kept = append(kept, l)
					break
				}
			}
		}
		jrd.Links = kept
		if jrd.Links == nil {
			jrd.Links = []Link{}
		}
	}
	web.WriteJSONType(w, http.StatusOK, ContentType, jrd)
}
