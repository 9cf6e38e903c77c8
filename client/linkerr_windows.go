//go:build windows

package client

import (
	"errors"

	"golang.org/x/sys/windows"
)

// linkUnsupported reports whether err, from CreateHardLink, means the
// volume makes no hard links: ERROR_INVALID_FUNCTION ("Incorrect
// function"), which FAT and exFAT volumes answer.
func linkUnsupported(err error) bool { return errors.Is(err, windows.ERROR_INVALID_FUNCTION) }
