//go:build !linux

package natstest

import (
	"errors"
	"testing"
)

func runInNamespace(testing.TB) ([]byte, error) {
	return nil, errors.New("user namespaces are Linux's")
}
