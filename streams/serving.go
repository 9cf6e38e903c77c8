package streams

import (
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Serving is the readiness of the micro service svc (nil until it was
// started) that name serves on nc: it fails unless svc is not stopped
// and nc is up (nats.go subscribes svc again on every reconnect, the
// broker then delivering it the requests).
func Serving(name string, svc micro.Service, nc *nats.Conn) error {
	switch {
	case svc == nil || svc.Stopped():
		return errors.New(name + " service not running")
	case !nc.IsConnected():
		return errors.New(name + " connection to the broker is down")
	}
	return nil
}
