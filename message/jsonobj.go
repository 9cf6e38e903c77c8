package message

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"kez.lat/kez/strictjson"
)

// member is one name/value pair of a JSON object, the value as raw JSON.
type member struct {
	name  string
	value json.RawMessage
}

// objectMembers splits b, which must be exactly one JSON object and nothing
// else but white space, into its members in order. A name that appears
// twice is an error: encoding/json would keep the last value silently (and
// match names case-insensitively), so two implementations could read two
// different messages from the same bytes.
//
// The common shapes (what Marshal and Text write, and white space) are
// split by [scanMembers] without encoding/json, which costs most of a
// Parse; anything it is not sure of is left to encoding/json, whose answer
// and error then stand. FuzzMembers checks that the two agree.
func objectMembers(b []byte) ([]member, error) {
	if ms, ok := scanMembers(b); ok {
		return ms, nil
	}
	return decodeMembers(b)
}

// decodeMembers is objectMembers with encoding/json's decoder.
func decodeMembers(b []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, strictjson.DecodeError(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	var ms []member
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, strictjson.DecodeError(err))
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: bad object key", ErrMalformed)
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: repeated field %s", ErrMalformed, strictjson.Quote(name))
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: field %s: %v", ErrMalformed, strictjson.Quote(name), strictjson.DecodeError(err))
		}
		ms = append(ms, member{name, v})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, fmt.Errorf("%w: unterminated JSON object", ErrMalformed)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	return ms, nil
}

// jsonString decodes v, which must be a JSON string.
func jsonString(v json.RawMessage) (string, bool) {
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	// Without escapes, control characters or invalid UTF-8 (which
	// encoding/json would replace), the string is its bytes.
	if len(v) >= 2 && v[len(v)-1] == '"' && plainString(v[1:len(v)-1]) {
		return string(v[1 : len(v)-1]), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// scanMembers splits b as objectMembers does, for a subset of JSON: an
// object whose member names are printable ASCII without escapes, none
// repeated, and whose values are strings or integers written 0 or
// [1-9][0-9]*, with JSON white space between tokens. Anything else (other
// values, escapes in names, a syntax error, a repeated name) returns
// false, and the caller decides with encoding/json. The values are
// sub-slices of b.
func scanMembers(b []byte) ([]member, bool) {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	ms := make([]member, 0, 8)
	if i < len(b) && b[i] == '}' {
		return ms, skipSpace(b, i+1) == len(b)
	}
	for {
		// Name.
		if i == len(b) || b[i] != '"' {
			return nil, false
		}
		j := i + 1
		for j < len(b) && b[j] != '"' {
			if c := b[j]; c < 0x20 || c > 0x7e || c == '\\' {
				return nil, false
			}
			j++
		}
		if j == len(b) {
			return nil, false
		}
		name := string(b[i+1 : j])
		for _, m := range ms {
			if m.name == name {
				return nil, false
			}
		}
		i = skipSpace(b, j+1)
		if i == len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipSpace(b, i+1)
		// Value.
		if i == len(b) {
			return nil, false
		}
		start := i
		switch c := b[i]; {
		case c == '"':
			j, ok := scanString(b, i)
			if !ok {
				return nil, false
			}
			i = j
		case c == '0':
			i++
		case c >= '1' && c <= '9':
			for i < len(b) && b[i] >= '0' && b[i] <= '9' {
				i++
			}
		default:
			return nil, false
		}
		ms = append(ms, member{name, b[start:i:i]})
		i = skipSpace(b, i)
		if i == len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return ms, skipSpace(b, i+1) == len(b)
		default:
			// Also a number followed by '.', 'e' or another digit
			// after a leading 0.
			return nil, false
		}
	}
}

// scanString returns the index just after the JSON string that starts at
// b[i] ('"'), checking its escapes as JSON defines them; bytes from 0x80
// up are left to the decoding of the value.
func scanString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return 0, false
		case c == '\\':
			i++
			if i == len(b) {
				return 0, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return 0, false
				}
				for _, h := range b[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return 0, false
					}
				}
				i += 4
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reports whether the content of a JSON string decodes to
// itself: no escapes, no control characters, valid UTF-8.
func plainString(b []byte) bool {
	ascii := true
	for _, c := range b {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	return ascii || utf8.Valid(b)
}
