//go:build !linux

package blob

import (
	"errors"
	"os"
)

func openDirectNoFollow(string) (*os.File, error) { return nil, errors.ErrUnsupported }
