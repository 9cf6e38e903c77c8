package natstest

import (
	"errors"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// Errors collects a connection's asynchronous errors, such as the
// permission violations the broker reports: pass Handler to
// nats.ErrorHandler.
type Errors struct {
	mu   sync.Mutex
	list []error
}

// Handler is a nats.ErrHandler that keeps err.
func (e *Errors) Handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, err)
}

// List returns the errors collected so far.
func (e *Errors) List() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.list...)
}

// Violation reports whether the broker refused subject with a
// permissions violation.
func (e *Errors) Violation(subject string) bool {
	for _, err := range e.List() {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// Contains reports whether an error's text holds s, in any case.
func (e *Errors) Contains(s string) bool {
	for _, err := range e.List() {
		if strings.Contains(strings.ToLower(err.Error()), strings.ToLower(s)) {
			return true
		}
	}
	return false
}
