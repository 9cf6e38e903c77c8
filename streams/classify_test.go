package streams

import (
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestTemporaryErrors: JetStream's answers while a cluster elects (10008,
// code 503) are waited out, and never taken for damaged data; an answer
// about the data itself is not temporary.
func TestTemporaryErrors(t *testing.T) {
	electing := fmt.Errorf("get: %w", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"})
	noLeader := &jetstream.APIError{Code: 503, ErrorCode: 10074, Description: "stream is offline"}
	bad := &jetstream.APIError{Code: 500, ErrorCode: 10999, Description: "message block is corrupt"}
	if !isTemporary(electing) || !isClusterUnavailable(electing) {
		t.Errorf("10008: temporary %v, cluster unavailable %v; want both", isTemporary(electing), isClusterUnavailable(electing))
	}
	if !isTemporary(noLeader) || isClusterUnavailable(noLeader) {
		t.Errorf("a 503 other than 10008: temporary %v, cluster unavailable %v", isTemporary(noLeader), isClusterUnavailable(noLeader))
	}
	if isTemporary(bad) || isClusterUnavailable(bad) || isTemporary(fmt.Errorf("plain")) {
		t.Error("an error about the data, or not JetStream's, taken for temporary")
	}
}
