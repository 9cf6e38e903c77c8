package natstest_test

import (
	"testing"

	"kez.lat/kez/callout"
	"kez.lat/kez/natstest"
)

func TestStartLoadsReferenceConfig(t *testing.T) {
	s := natstest.Start(t)
	nc := s.Connect(callout.KeyChatServer)
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(); err != nil {
		t.Fatalf("service user has no JetStream: %v", err)
	}
	if !s.JetStreamEnabled() {
		t.Fatal("JetStream off")
	}
	if !s.JetStreamConfig().SyncAlways {
		t.Fatal("sync_interval: always not applied")
	}
}
