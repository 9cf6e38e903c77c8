package share

import (
	"fmt"

	"kez.lat/kez"
	"kez.lat/kez/strictjson"
)

// strict is the JSON of announcements and manifests. The formats nest
// three levels (manifest payload, entries, entry); nothing deeper is read.
var strict = strictjson.Format{MaxDepth: 8, Err: ErrMalformed}

// MaxSafeInteger is the largest integer any field may carry (sizes, times,
// seq): 2^53-1, the largest every JSON implementation reads exactly.
const MaxSafeInteger = strictjson.MaxSafeInteger

// key returns o's required member name, which must be a public key
// ed25519:<hex>.
func key(o strictjson.Object, name string) (kez.PublicKey, error) {
	s, err := o.String(name, true)
	if err != nil {
		return kez.PublicKey{}, err
	}
	k, err := kez.ParsePublicKey(s)
	if err != nil {
		return kez.PublicKey{}, o.Errorf("field %q: %w", name, err)
	}
	return k, nil
}

// addrs returns o's required member "addrs", which must be an array of at
// most max strings ([ErrAddr] past it); an empty array is nil.
func addrs(o strictjson.Object, max int) ([]string, error) {
	elems, err := o.Array("addrs", true)
	if err != nil {
		return nil, err
	}
	if len(elems) > max {
		return nil, fmt.Errorf("%w: %s: at most %d addrs", ErrAddr, o.What(), max)
	}
	out, err := o.Strings("addrs", true)
	if len(out) == 0 {
		out = nil
	}
	return out, err
}
