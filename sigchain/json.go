package sigchain

import "kez.lat/kez/strictjson"

// strict is the JSON of events. Known bodies nest two levels; unknown
// bodies get room to grow, not to recurse.
var strict = strictjson.Format{MaxDepth: 32, Err: ErrMalformed}

// MaxSafeInteger is the largest integer a payload may carry (seqno, ctime,
// size): 2^53-1, the largest every JSON implementation reads exactly.
const MaxSafeInteger = strictjson.MaxSafeInteger
