package relay_test

import (
	"errors"
	"testing"
	"time"

	"kez.lat/kez/relay"
)

func TestConfigValidate(t *testing.T) {
	valid := relay.DefaultConfig()
	valid.KeyFile = "/data/relay.key"
	valid.HomeServer = "http://chat-server:8080"
	if err := valid.Validate(); err != nil {
		t.Fatalf("defaults with key file and home server: %v", err)
	}
	if valid.CircuitDuration != time.Hour || valid.CircuitData != 4<<30 {
		t.Errorf("default circuit limits %v / %d, want 1h / 4 GiB", valid.CircuitDuration, valid.CircuitData)
	}
	unlimited := valid
	unlimited.CircuitDuration, unlimited.CircuitData = 0, 0
	if err := unlimited.Validate(); err != nil {
		t.Errorf("no circuit limits: %v", err)
	}
	for _, tt := range []struct {
		name   string
		adjust func(*relay.Config)
	}{
		{"no key file", func(c *relay.Config) { c.KeyFile = "" }},
		{"no home server", func(c *relay.Config) { c.HomeServer = "" }},
		{"home server not http", func(c *relay.Config) { c.HomeServer = "nats://x:4222" }},
		{"no listen", func(c *relay.Config) { c.Listen = nil }},
		{"bad listen", func(c *relay.Config) { c.Listen = []string{"0.0.0.0:4001"} }},
		{"one circuit limit zero", func(c *relay.Config) { c.CircuitData = 0 }},
		{"negative duration", func(c *relay.Config) { c.CircuitDuration = -time.Second }},
		{"no reservations", func(c *relay.Config) { c.MaxReservations = 0 }},
		{"no negative ttl", func(c *relay.Config) { c.ACLNegativeTTL = 0 }},
		{"tiny memory", func(c *relay.Config) { c.MaxMemory = 1 << 20 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			c.Listen = append([]string(nil), valid.Listen...)
			tt.adjust(&c)
			if err := c.Validate(); !errors.Is(err, relay.ErrConfig) {
				t.Errorf("Validate = %v, want ErrConfig", err)
			}
		})
	}
}
