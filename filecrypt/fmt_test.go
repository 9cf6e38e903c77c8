package filecrypt_test

import (
	"fmt"

	"kez.lat/kez/filecrypt"
)

func fmtAll(k filecrypt.Key) string {
	return fmt.Sprintf("%v %+v %#v %s %x %X %q", k, k, k, k, k, k, k)
}
