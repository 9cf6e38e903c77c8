package kez

import "net/http"

// ErrorBody is the JSON body of every error answer of the kez HTTP APIs:
// {"error": "<message>", "code": "<code>"}.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// ErrorCode ties a sentinel error to the HTTP status and the stable code
// of the answers that report it.
type ErrorCode struct {
	Err    error
	Status int
	Code   string
}

// ErrorCodes returns the codes of the root sentinel errors, which every
// kez HTTP API answers with (servers add codes of their own): the one
// table the servers answer from and the clients map codes back with
// ([CodeError]).
func ErrorCodes() []ErrorCode {
	return []ErrorCode{
		{ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
		{ErrRateLimited, http.StatusTooManyRequests, "rate_limited"},
		{ErrInvalidHandle, http.StatusBadRequest, "invalid_handle"},
		{ErrInvalidKey, http.StatusBadRequest, "invalid_key"},
		{ErrWrongDomain, http.StatusBadRequest, "wrong_domain"},
		{ErrInvalidRequest, http.StatusBadRequest, "invalid_request"},
		{ErrBadSignature, http.StatusUnauthorized, "bad_signature"},
		{ErrStaleTimestamp, http.StatusUnauthorized, "stale_timestamp"},
		{ErrReservedHandle, http.StatusForbidden, "reserved"},
		{ErrHandleTaken, http.StatusConflict, "handle_taken"},
		{ErrKeyTaken, http.StatusConflict, "key_taken"},
		{ErrHandleTooSimilar, http.StatusConflict, "too_similar"},
		{ErrNotFound, http.StatusNotFound, "not_found"},
		{ErrLogDamaged, http.StatusServiceUnavailable, "log_damaged"},
		{ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
		{ErrStoreUnavailable, http.StatusServiceUnavailable, "store_unavailable"},
	}
}

// CodeError returns the root sentinel error answered with code, or nil
// for a code of no root sentinel.
func CodeError(code string) error {
	for _, c := range ErrorCodes() {
		if c.Code == code {
			return c.Err
		}
	}
	return nil
}
