package sigchain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"
)

// maxDepth bounds the nesting of JSON in an event. Known bodies nest two
// levels; unknown bodies get room to grow, not to recurse.
const maxDepth = 32

// MaxSafeInteger is the largest integer a payload may carry (seqno, ctime,
// size): 2^53-1, the largest every JSON implementation reads exactly.
const MaxSafeInteger = 1<<53 - 1

// checkJSON reports whether b is exactly one JSON value in valid UTF-8,
// with no object holding the same key twice and no nesting deeper than
// maxDepth. Decoders disagree on duplicate keys (Go keeps the last, others
// the first), so a signed payload with one could mean two things to two
// verifiers; refusing it gives every event one reading.
func checkJSON(b []byte, what string) error {
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: %s: invalid UTF-8", ErrMalformed, what)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers stay text: no float range errors, no rounding
	err := walkJSON(dec, 0)
	if err == nil {
		if _, err2 := dec.Token(); !errors.Is(err2, io.EOF) {
			err = errors.New("trailing data after JSON value")
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	return nil
}

func walkJSON(dec *json.Decoder, depth int) error {
	if depth > maxDepth {
		return errors.New("JSON nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err)
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return jsonError(err)
			}
			key, ok := k.(string)
			if !ok {
				return errors.New("malformed JSON object")
			}
			if seen[key] {
				return fmt.Errorf("duplicate field %s", quote(key))
			}
			seen[key] = true
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // '}'
			return jsonError(err)
		}
	case json.Delim('['):
		for dec.More() {
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return jsonError(err)
		}
	}
	return nil
}

// jsonError describes a decoding error without echoing the input.
func jsonError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at offset %d", se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated JSON")
	}
	return errors.New("invalid JSON")
}

// quote returns s quoted for an error message, cut short: field names come
// from untrusted input.
func quote(s string) string {
	const max = 32
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// object is a JSON object split into its members. Its keys are matched
// exactly: encoding/json matches struct fields case-insensitively, which
// would let "Seqno" stand in for "seqno" in Go and nowhere else.
type object struct {
	what string // for errors: "payload", "claim", ...
	m    map[string]json.RawMessage
}

// errorf returns an error wrapping ErrMalformed that names o.
func (o object) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, o.what, fmt.Sprintf(format, args...))
}

// parseObject decodes b, which checkJSON accepted, as a JSON object whose
// keys are all in allowed (any keys if allowed is empty).
func parseObject(b []byte, what string, allowed ...string) (object, error) {
	o := object{what: what}
	if !isObject(b) {
		return o, o.errorf("must be a JSON object")
	}
	if err := json.Unmarshal(b, &o.m); err != nil {
		return o, o.errorf("%v", jsonError(err))
	}
	if len(allowed) > 0 {
		for k := range o.m {
			if !slices.Contains(allowed, k) {
				return o, o.errorf("unknown field %s", quote(k))
			}
		}
	}
	return o, nil
}

// isObject reports whether the JSON value b is an object.
func isObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

// has reports whether the member is present (null counts as present).
func (o object) has(name string) bool { _, ok := o.m[name]; return ok }

func (o object) missing(name string) error { return o.errorf("missing field %q", name) }

// string returns the member as a string. A present member must be a JSON
// string (not null); an absent one is an error only if required.
func (o object) string(name string, required bool) (string, error) {
	raw, ok := o.m[name]
	if !ok {
		if required {
			return "", o.missing(name)
		}
		return "", nil
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", o.errorf("field %q must be a string", name)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", o.errorf("field %q must be a string", name)
	}
	return s, nil
}

// uint returns the member as an integer in [0, MaxSafeInteger], written as
// plain decimal digits: no sign, fraction, exponent or leading zero, so that
// every implementation reads the same number or none.
func (o object) uint(name string) (uint64, error) {
	raw, ok := o.m[name]
	if !ok {
		return 0, o.missing(name)
	}
	raw = bytes.TrimSpace(raw)
	bad := o.errorf("field %q must be an integer from 0 to 2^53-1", name)
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

// strings returns the member as an array of strings; absent is nil.
func (o object) strings(name string) ([]string, error) {
	raw, ok := o.m[name]
	if !ok {
		return nil, nil
	}
	raw = bytes.TrimSpace(raw)
	bad := o.errorf("field %q must be an array of strings", name)
	if len(raw) == 0 || raw[0] != '[' {
		return nil, bad
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, bad
	}
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		if len(e) == 0 || e[0] != '"' {
			return nil, bad
		}
		var s string
		if err := json.Unmarshal(e, &s); err != nil {
			return nil, bad
		}
		out = append(out, s)
	}
	return out, nil
}

// marshal encodes v as compact JSON without HTML escaping (the payload is
// never embedded in HTML; "<" stays "<").
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
