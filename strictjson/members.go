package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Member is one name/value pair of a JSON object, the value as raw JSON.
type Member struct {
	Name  string
	Value json.RawMessage
}

// Members splits b, which must be exactly one JSON object and nothing else
// but white space, into its members in the order they were written; what
// names b in errors, which wrap f's sentinel and [ErrMalformed]. A name
// that appears twice is an error: encoding/json would keep the last value
// silently (and match names case-insensitively), so two implementations
// could read two different documents from the same bytes.
//
// Unlike [Format.Check] it reads the object's own members only: a value
// is checked to be JSON, and its reader checks what is inside (f.MaxDepth
// is not applied, nor a check of UTF-8 beyond encoding/json's).
//
// The common shapes (string and integer members, white space) are split
// without encoding/json, which costs most of a parse of a small object;
// anything the fast path is not sure of is left to encoding/json, whose
// answer and error then stand. FuzzMembers checks that the two agree.
func (f Format) Members(b []byte, what string) ([]Member, error) {
	if ms, ok := scanMembers(b); ok {
		return ms, nil
	}
	ms, err := decodeMembers(b)
	if err != nil {
		return nil, f.errorf(what, "%v", err)
	}
	return ms, nil
}

// decodeMembers is Members with encoding/json's decoder; its errors do
// not echo the input.
func decodeMembers(b []byte) ([]Member, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, DecodeError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var ms []Member
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, DecodeError(err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("bad object key")
		}
		if seen[name] {
			return nil, fmt.Errorf("repeated field %s", Quote(name))
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("field %s: %v", Quote(name), DecodeError(err))
		}
		ms = append(ms, Member{name, v})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errors.New("unterminated JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON object")
	}
	return ms, nil
}

// StringValue decodes v, which must be a JSON string with nothing around
// it, as json.Unmarshal would (invalid UTF-8 becomes U+FFFD); ok is false
// for anything else.
func StringValue(v json.RawMessage) (string, bool) {
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	// Without escapes, control characters or invalid UTF-8 (which
	// encoding/json would replace), the string is its bytes.
	if len(v) >= 2 && v[len(v)-1] == '"' && plainString(v[1:len(v)-1]) {
		return string(v[1 : len(v)-1]), true
	}
	var s string // here only: &s escapes, and would cost the fast path an allocation
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// scanMembers splits b as Members does, for a subset of JSON: an object
// whose member names are printable ASCII without escapes, none repeated,
// and whose values are strings or integers written 0 or [1-9][0-9]*, with
// JSON white space between tokens. Anything else (other values, escapes in
// names, a syntax error, a repeated name) returns false, and the caller
// decides with encoding/json. The values are sub-slices of b.
func scanMembers(b []byte) ([]Member, bool) {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	ms := make([]Member, 0, 8)
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
			if m.Name == name {
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
		ms = append(ms, Member{name, b[start:i:i]})
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
