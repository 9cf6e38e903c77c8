package p2p

import (
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/p2p/host/autonat"
	"github.com/libp2p/go-libp2p/p2p/host/autonat/pb"
)

func TestReachability(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want Reachability
	}{
		{nil, ReachPublic},
		{autonat.Error{Status: pb.Message_E_DIAL_ERROR, Text: "dial failed"}, ReachPrivate},
		{autonat.Error{Status: pb.Message_E_DIAL_REFUSED, Text: "refusing to dial peer with blocked observed address"}, ReachLocal},
		{autonat.Error{Status: pb.Message_E_INTERNAL_ERROR}, ReachUnknown},
		{errors.New("protocols not supported"), ReachUnknown},
	} {
		if got, _ := reachability(tt.err); got != tt.want {
			t.Errorf("reachability(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}
