//go:build integration

package integration_test

// bigFileSize is the size of TestFiles's large file: 200 MiB, the size the
// file layer is specified to handle, read and written in one chunk of
// memory at a time.
const bigFileSize = 200 << 20
