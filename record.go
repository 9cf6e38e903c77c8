package kez

import "strings"

// Record is the public JSON form of a [HandleRecord], as the home server
// answers GET /v1/u/{handle}, GET /v1/k/{primary} and POST /v1/register.
type Record struct {
	Handle          string     `json:"handle"`
	Primary         string     `json:"primary"`
	SigchainURL     string     `json:"sigchain_url"`
	NATS            RecordNATS `json:"nats"`
	RegisteredAt    int64      `json:"registered_at"`
	RegistrationSig []byte     `json:"registration_sig"`
	// Relays are the circuit relays (multiaddrs ending in /p2p/<id>) this
	// server's users reserve on; see [ParseRelayAddr].
	Relays []string `json:"relays,omitempty"`
}

// RecordNATS tells a client where the user's inbox is.
type RecordNATS struct {
	URL   string `json:"url"`
	Inbox string `json:"inbox"`
}

// SigchainPath is the sig-server's route of a chain, followed by the
// key's hex: GET fetches the chain, POST to it + "/events" appends.
const SigchainPath = "/v1/sigchains/ed25519/"

// NextPageHeader, on a chain answer that does not reach the tail, names
// the since of the next page.
const NextPageHeader = "Kez-Next-Since"

// SigchainURL returns the URL of key's sigchain under base, the
// sig-server's base URL (https://sig.kez.lat).
func SigchainURL(base string, key PublicKey) string {
	return strings.TrimRight(base, "/") + SigchainPath + key.Hex()
}

// SigchainBase returns the base URL of a sigchain URL of key, as
// [SigchainURL] builds it, and reports whether url is one.
func SigchainBase(url string, key PublicKey) (string, bool) {
	base, ok := strings.CutSuffix(url, SigchainPath+key.Hex())
	return base, ok && base != ""
}
