package message

import (
	"bytes"
	"encoding/json"
	"fmt"

	"kez.lat/kez/strictjson"
)

// Plaintext types this version understands.
const (
	// TypeText is a text message: {"type":"text","body":"..."}.
	TypeText = "text"
	// TypeFileShare announces a shared file: {"type":"file_share", ...}.
	// Its other fields belong to the file layer, which reads them from
	// [Plaintext.Raw].
	TypeFileShare = "file_share"
)

// Plaintext is the decrypted body of a message: a JSON object with a string
// member "type" and members that depend on the type. It keeps the exact JSON
// bytes, so that a type this version does not know is carried through and
// shown as such, never dropped, and fields added by newer clients survive.
// The zero value is not a valid plaintext.
type Plaintext struct {
	raw  []byte
	typ  string
	body string
}

// Text returns the plaintext of a text message. Invalid UTF-8 in body is
// replaced by U+FFFD, as JSON requires.
func Text(body string) Plaintext {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(struct {
		Type string `json:"type"`
		Body string `json:"body"`
	}{TypeText, body}); err != nil {
		panic("message: encode text plaintext: " + err.Error()) // cannot happen for strings
	}
	p, err := NewPlaintext(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
	if err != nil {
		panic("message: text plaintext does not parse: " + err.Error())
	}
	return p
}

// NewPlaintext checks raw and returns it as a Plaintext, keeping the bytes
// as they are. raw must be one JSON object with no repeated member, whose
// "type" is a non-empty string; a text message must have a string "body".
// Other members and unknown types are allowed. It returns [ErrMalformed]
// otherwise.
func NewPlaintext(raw []byte) (Plaintext, error) {
	return newPlaintext(bytes.Clone(raw))
}

// newPlaintext is NewPlaintext for bytes the Plaintext may keep.
func newPlaintext(raw []byte) (Plaintext, error) {
	ms, err := jsonFormat.Members(raw, "plaintext")
	if err != nil {
		return Plaintext{}, err
	}
	p := Plaintext{raw: raw}
	var body json.RawMessage
	for _, m := range ms {
		switch m.Name {
		case "type":
			var ok bool
			if p.typ, ok = strictjson.StringValue(m.Value); !ok || p.typ == "" {
				return Plaintext{}, fmt.Errorf("plaintext: %w: \"type\" must be a non-empty string", ErrMalformed)
			}
		case "body":
			body = m.Value
		}
	}
	if p.typ == "" {
		return Plaintext{}, fmt.Errorf("plaintext: %w: no \"type\"", ErrMalformed)
	}
	// Other types give "body" (if any) their own meaning.
	if p.typ == TypeText {
		var ok bool
		if p.body, ok = strictjson.StringValue(body); !ok {
			return Plaintext{}, fmt.Errorf("plaintext: %w: text needs a string \"body\"", ErrMalformed)
		}
	}
	return p, nil
}

// Type returns the "type" member, such as [TypeText].
func (p Plaintext) Type() string { return p.typ }

// Known reports whether this version of the package understands p's type.
// Callers show a message of an unknown type as such ("sent a message of
// type x this version cannot show"), never drop it.
func (p Plaintext) Known() bool { return p.typ == TypeText || p.typ == TypeFileShare }

// Body returns the text of a [TypeText] message, "" for other types.
func (p Plaintext) Body() string { return p.body }

// Raw returns a copy of the exact JSON bytes of p.
func (p Plaintext) Raw() []byte { return bytes.Clone(p.raw) }

// IsZero reports whether p is the zero value.
func (p Plaintext) IsZero() bool { return p.raw == nil }

// MarshalJSON returns the exact JSON bytes of p, so a plaintext can be
// stored inside another JSON document.
func (p Plaintext) MarshalJSON() ([]byte, error) {
	if p.IsZero() {
		return nil, fmt.Errorf("plaintext: %w: zero value", ErrMalformed)
	}
	return p.Raw(), nil
}

// UnmarshalJSON implements json.Unmarshaler; see [NewPlaintext].
func (p *Plaintext) UnmarshalJSON(b []byte) error {
	q, err := NewPlaintext(b)
	if err != nil {
		return err
	}
	*p = q
	return nil
}
