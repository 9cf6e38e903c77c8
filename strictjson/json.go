package strictjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"
)

// MaxSafeInteger is the largest integer [Object.Uint] reads: 2^53-1, the
// largest every JSON implementation reads exactly.
const MaxSafeInteger = 1<<53 - 1

// ErrMalformed is wrapped by every error about the input, together with
// the [Format]'s own sentinel.
var ErrMalformed = errors.New("malformed JSON")

// Format is a strict JSON format: how deep it may nest and which sentinel
// its errors wrap. Its zero value refuses any nesting.
type Format struct {
	// MaxDepth bounds the nesting of arrays and objects: 1 allows an
	// object of scalars, 2 an object of objects, and so on.
	MaxDepth int
	// Err is the caller's sentinel (such as sigchain.ErrMalformed).
	// Errors about the input wrap it and ErrMalformed, and read as
	// "<Err>: <what>: <detail>"; nil means ErrMalformed alone.
	Err error
}

// malformed is an error about the input of a format.
type malformed struct {
	sentinel error // the Format's Err, or ErrMalformed
	what     string
	detail   error
}

func (e *malformed) Error() string {
	return e.sentinel.Error() + ": " + e.what + ": " + e.detail.Error()
}

func (e *malformed) Unwrap() []error { return []error{e.sentinel, ErrMalformed, e.detail} }

// errorf returns an error about what, wrapping f's sentinel and
// ErrMalformed, and whatever format wraps with %w.
func (f Format) errorf(what, format string, args ...any) error {
	s := f.Err
	if s == nil {
		s = ErrMalformed
	}
	return &malformed{s, what, fmt.Errorf(format, args...)}
}

// Check reports whether b is exactly one JSON value in valid UTF-8, with
// no object holding the same member twice and no nesting deeper than
// f.MaxDepth; what names b in errors. Decoders disagree on repeated
// members (Go keeps the last, others the first), so a signed or sealed
// object with one could mean two things to two readers; refusing it gives
// every object one reading.
func (f Format) Check(b []byte, what string) error {
	if !utf8.Valid(b) {
		return f.errorf(what, "invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers stay text: no float range errors, no rounding
	err := f.walk(dec, 0)
	if err == nil {
		if _, err2 := dec.Token(); !errors.Is(err2, io.EOF) {
			err = errors.New("data after the JSON value")
		}
	}
	if err != nil {
		return f.errorf(what, "%v", err)
	}
	return nil
}

func (f Format) walk(dec *json.Decoder, depth int) error {
	if depth > f.MaxDepth {
		return errors.New("JSON nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return DecodeError(err)
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return DecodeError(err)
			}
			key, ok := k.(string)
			if !ok {
				return errors.New("malformed JSON object")
			}
			if seen[key] {
				return fmt.Errorf("repeated field %s", Quote(key))
			}
			seen[key] = true
			if err := f.walk(dec, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // '}'
			return DecodeError(err)
		}
	case json.Delim('['):
		for dec.More() {
			if err := f.walk(dec, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return DecodeError(err)
		}
	}
	return nil
}

// DecodeError describes an error of encoding/json without echoing the
// input: the offset of a syntax error, truncation, or just "invalid JSON".
func DecodeError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at offset %d", se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated JSON")
	}
	return errors.New("invalid JSON")
}

// Quote returns s quoted for an error message and cut to 32 bytes: member
// names come from untrusted input.
func Quote(s string) string {
	const max = 32
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// Parse checks b like [Format.Check] and returns it as an [Object], like
// [Format.Object].
func (f Format) Parse(b []byte, what string, allowed ...string) (Object, error) {
	if err := f.Check(b, what); err != nil {
		return Object{}, err
	}
	return f.Object(b, what, allowed...)
}

// Object returns b, a JSON value [Format.Check] accepted (alone or as part
// of a larger one), as an [Object] whose members must all be in allowed
// (any members if allowed is empty); what names it in errors.
func (f Format) Object(b []byte, what string, allowed ...string) (Object, error) {
	o := Object{f: f, what: what}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return o, o.Errorf("must be a JSON object")
	}
	if err := json.Unmarshal(b, &o.m); err != nil {
		return o, o.Errorf("%v", DecodeError(err))
	}
	if len(allowed) > 0 {
		for k := range o.m {
			if !slices.Contains(allowed, k) {
				return o, o.Errorf("unknown field %s", Quote(k))
			}
		}
	}
	return o, nil
}

// Object is a JSON object split into its members, matched by exact name:
// encoding/json matches struct fields case-insensitively, which would let
// "Seqno" stand in for "seqno" in Go and nowhere else. Its methods return
// errors that name the object and wrap its format's sentinels.
type Object struct {
	f    Format
	what string
	m    map[string]json.RawMessage
}

// What returns the name of o in errors ("payload", "claim", ...).
func (o Object) What() string { return o.what }

// Errorf returns an error about o: "<sentinel>: <what>: <detail>", wrapping
// the format's sentinel, [ErrMalformed], and any error format wraps with %w.
func (o Object) Errorf(format string, args ...any) error {
	return o.f.errorf(o.what, format, args...)
}

// Has reports whether the member is present (null counts as present).
func (o Object) Has(name string) bool { _, ok := o.m[name]; return ok }

// Raw returns the member's JSON as it was written, and whether it is
// present.
func (o Object) Raw(name string) (json.RawMessage, bool) { raw, ok := o.m[name]; return raw, ok }

// Missing returns the error for a required member that is absent.
func (o Object) Missing(name string) error { return o.Errorf("missing field %q", name) }

// String returns the member as a string. A present member must be a JSON
// string (not null); an absent one is an error only if required.
func (o Object) String(name string, required bool) (string, error) {
	raw, ok := o.m[name]
	if !ok {
		if required {
			return "", o.Missing(name)
		}
		return "", nil
	}
	s, ok := StringValue(bytes.TrimSpace(raw))
	if !ok {
		return "", o.Errorf("field %q must be a string", name)
	}
	return s, nil
}

// Uint returns a required member that must be an integer in [0,
// MaxSafeInteger] written as plain decimal digits: no sign, fraction,
// exponent or leading zero, so that every implementation reads the same
// number or none.
func (o Object) Uint(name string) (uint64, error) {
	raw, ok := o.m[name]
	if !ok {
		return 0, o.Missing(name)
	}
	raw = bytes.TrimSpace(raw)
	bad := o.Errorf("field %q must be an integer from 0 to 2^53-1", name)
	if len(raw) == 0 || len(raw) > 16 || (raw[0] == '0' && len(raw) > 1) {
		return 0, bad
	}
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, bad
		}
	}
	n, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil || n > MaxSafeInteger {
		return 0, bad
	}
	return n, nil
}

// Int returns the member like [Object.Uint], as an int64.
func (o Object) Int(name string) (int64, error) {
	n, err := o.Uint(name)
	return int64(n), err // at most MaxSafeInteger: exact
}

// Bytes returns a required member that must be canonical standard padded
// base64 of n bytes (n < 0: any length from -n on).
func (o Object) Bytes(name string, n int) ([]byte, error) {
	s, err := o.String(name, true)
	if err != nil {
		return nil, err
	}
	b, err := DecodeBase64(s)
	if err != nil || (n >= 0 && len(b) != n) || (n < 0 && len(b) < -n) {
		if n >= 0 {
			return nil, o.Errorf("field %q must be %d bytes in standard padded base64", name, n)
		}
		return nil, o.Errorf("field %q must be at least %d bytes in standard padded base64", name, -n)
	}
	return b, nil
}

// Array returns the member, which must be a JSON array, as its raw
// elements; an absent one is nil, an error only if required.
func (o Object) Array(name string, required bool) ([]json.RawMessage, error) {
	raw, ok := o.m[name]
	if !ok {
		if required {
			return nil, o.Missing(name)
		}
		return nil, nil
	}
	var elems []json.RawMessage
	if raw = bytes.TrimSpace(raw); len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
		return nil, o.Errorf("field %q must be an array", name)
	}
	return elems, nil
}

// Strings returns the member, which must be an array of strings; an
// absent one is nil, an error only if required; an empty one is empty,
// not nil.
func (o Object) Strings(name string, required bool) ([]string, error) {
	raw, ok := o.m[name]
	if !ok {
		if required {
			return nil, o.Missing(name)
		}
		return nil, nil
	}
	bad := o.Errorf("field %q must be an array of strings", name)
	var elems []json.RawMessage
	if raw = bytes.TrimSpace(raw); len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
		return nil, bad
	}
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		s, ok := StringValue(bytes.TrimSpace(e))
		if !ok {
			return nil, bad
		}
		out = append(out, s)
	}
	return out, nil
}

// DecodeBase64 decodes standard padded base64 and accepts only its
// canonical form: the decoder also takes newlines and non-zero padding
// bits, which would give one value several spellings.
func DecodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if base64.StdEncoding.EncodeToString(b) != s {
		return nil, errors.New("non-canonical base64")
	}
	return b, nil
}

// Marshal encodes v as compact JSON without HTML escaping (what it writes
// is never embedded in HTML; "<" stays "<").
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
