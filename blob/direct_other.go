//go:build !linux

package blob

import (
	"errors"
	"os"
)

func openDirect(string) (*os.File, error) { return nil, errors.ErrUnsupported }

func isInvalid(error) bool { return false }
