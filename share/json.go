package share

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

	"kez.lat/kez"
)

// MaxSafeInteger is the largest integer any field may carry (sizes, times,
// seq): 2^53-1, the largest every JSON implementation reads exactly.
const MaxSafeInteger = 1<<53 - 1

// maxDepth bounds JSON nesting. The formats nest three levels (manifest
// payload, entries, entry); nothing deeper is read.
const maxDepth = 8

// checkJSON reports whether b is exactly one JSON value in valid UTF-8,
// with no object holding the same member twice and no nesting deeper than
// maxDepth. Decoders disagree on repeated members (Go keeps the last,
// others the first), so a signed or sealed object with one could mean two
// things to two readers; refusing it gives every object one reading.
func checkJSON(b []byte, what string) error {
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: %s: invalid UTF-8", ErrMalformed, what)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	err := walkJSON(dec, 0)
	if err == nil {
		if _, err2 := dec.Token(); !errors.Is(err2, io.EOF) {
			err = errors.New("data after the JSON value")
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
				return fmt.Errorf("repeated field %s", quote(key))
			}
			seen[key] = true
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return jsonError(err)
		}
	case json.Delim('['):
		for dec.More() {
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
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

// quote returns s quoted and cut short for an error message: field names
// come from untrusted input.
func quote(s string) string {
	if len(s) > 32 {
		s = s[:32] + "..."
	}
	return strconv.Quote(s)
}

// object is a JSON object split into its members, matched by exact name
// (encoding/json matches struct fields case-insensitively, which would let
// "Blob" stand in for "blob" in Go and nowhere else).
type object struct {
	what string
	m    map[string]json.RawMessage
}

func (o object) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, o.what, fmt.Sprintf(format, args...))
}

// parseObject decodes b, which checkJSON accepted, as a JSON object whose
// members are all in allowed.
func parseObject(b []byte, what string, allowed ...string) (object, error) {
	o := object{what: what}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return o, o.errorf("must be a JSON object")
	}
	if err := json.Unmarshal(b, &o.m); err != nil {
		return o, o.errorf("%v", jsonError(err))
	}
	for k := range o.m {
		if !slices.Contains(allowed, k) {
			return o, o.errorf("unknown field %s", quote(k))
		}
	}
	return o, nil
}

func (o object) has(name string) bool { _, ok := o.m[name]; return ok }

// string returns a member that must be a JSON string; an absent member is
// an error only if required.
func (o object) string(name string, required bool) (string, error) {
	raw, ok := o.m[name]
	if !ok {
		if required {
			return "", o.errorf("missing field %q", name)
		}
		return "", nil
	}
	var s string
	if raw = bytes.TrimSpace(raw); len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", o.errorf("field %q must be a string", name)
	}
	return s, nil
}

// uint returns a required member that must be an integer in [0,
// MaxSafeInteger] written as plain decimal digits: no sign, fraction,
// exponent or leading zero, so every implementation reads the same number
// or none.
func (o object) uint(name string) (int64, error) {
	raw, ok := o.m[name]
	if !ok {
		return 0, o.errorf("missing field %q", name)
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
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n > MaxSafeInteger {
		return 0, bad
	}
	return n, nil
}

// bytes returns a required member that must be canonical standard padded
// base64 of n bytes (n < 0: any length from -n on).
func (o object) bytes(name string, n int) ([]byte, error) {
	s, err := o.string(name, true)
	if err != nil {
		return nil, err
	}
	b, err := decodeBase64(s)
	if err != nil || (n >= 0 && len(b) != n) || (n < 0 && len(b) < -n) {
		if n >= 0 {
			return nil, o.errorf("field %q must be %d bytes in standard padded base64", name, n)
		}
		return nil, o.errorf("field %q must be at least %d bytes in standard padded base64", name, -n)
	}
	return b, nil
}

// key returns a required member that must be a public key ed25519:<hex>.
func (o object) key(name string) (kez.PublicKey, error) {
	s, err := o.string(name, true)
	if err != nil {
		return kez.PublicKey{}, err
	}
	k, err := kez.ParsePublicKey(s)
	if err != nil {
		return kez.PublicKey{}, fmt.Errorf("%w: %s: field %q: %w", ErrMalformed, o.what, name, err)
	}
	return k, nil
}

// array returns a required member that must be a JSON array, as its raw
// elements.
func (o object) array(name string) ([]json.RawMessage, error) {
	raw, ok := o.m[name]
	if !ok {
		return nil, o.errorf("missing field %q", name)
	}
	var elems []json.RawMessage
	if raw = bytes.TrimSpace(raw); len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
		return nil, o.errorf("field %q must be an array", name)
	}
	return elems, nil
}

// strings returns a required member that must be an array of at most max
// strings ([ErrAddr] past it: the only such member is "addrs"); an empty
// array is nil.
func (o object) strings(name string, max int) ([]string, error) {
	elems, err := o.array(name)
	if err != nil {
		return nil, err
	}
	if len(elems) > max {
		return nil, fmt.Errorf("%w: %s: at most %d %s", ErrAddr, o.what, max, name)
	}
	var out []string
	for _, e := range elems {
		var s string
		if e = bytes.TrimSpace(e); len(e) == 0 || e[0] != '"' || json.Unmarshal(e, &s) != nil {
			return nil, o.errorf("field %q must be an array of strings", name)
		}
		out = append(out, s)
	}
	return out, nil
}

// decodeBase64 decodes standard padded base64 and accepts only its
// canonical form: the decoder also takes newlines and non-zero padding
// bits, which would give one value several spellings.
func decodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if base64.StdEncoding.EncodeToString(b) != s {
		return nil, errors.New("non-canonical base64")
	}
	return b, nil
}

// marshal encodes v as compact JSON without HTML escaping.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
