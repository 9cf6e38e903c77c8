package kez

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// wrapJSONError turns a decoding error into one wrapping ErrInvalidRequest,
// or the key error when a key field failed its checks.
func wrapJSONError(err error) error {
	if errors.Is(err, ErrInvalidKey) || errors.Is(err, ErrInvalidHandle) {
		return err
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%w: malformed JSON at offset %d", ErrInvalidRequest, se.Offset)
	case errors.As(err, &te):
		return fmt.Errorf("%w: field %q has the wrong type", ErrInvalidRequest, te.Field)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: empty body", ErrInvalidRequest)
	}
	return fmt.Errorf("%w: %v", ErrInvalidRequest, err)
}
