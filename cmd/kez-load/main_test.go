package main

import (
	"os"
	"testing"
)

// TestNatsRSS: the --register-first memory figures count every nats-server
// node, however the stack named it ("nats-server" when found on the
// machine, "nats-server n1", ... when spawned), and nothing else. They
// read 0 while the spawned nodes' names did not match.
func TestNatsRSS(t *testing.T) {
	self := os.Getpid()
	one := (&session{st: &Stack{Procs: []Proc{{Name: "nats-server", PID: self}}}}).natsRSS()
	if one <= 0 {
		t.Fatalf("RSS of a process named nats-server: %.1f MiB, want > 0", one)
	}
	if got := (&session{st: &Stack{Procs: []Proc{{Name: "nats-server n1", PID: self}}}}).natsRSS(); got <= 0 {
		t.Errorf("RSS of a spawned node (nats-server n1): %.1f MiB, want > 0", got)
	}
	three := (&session{st: &Stack{Procs: []Proc{{Name: "nats-server n1", PID: self}, {Name: "nats-server n2", PID: self},
		{Name: "nats-server n3", PID: self}, {Name: "kez-chat-server", PID: self}, {Name: selfName, PID: self}}}}).natsRSS()
	if three < 2.5*one || three > 3.5*one {
		t.Errorf("RSS of three nodes (the same process thrice) = %.1f MiB, want about 3 × %.1f", three, one)
	}
	if got := (&session{st: &Stack{Procs: []Proc{{Name: "kez-chat-server", PID: self}, {Name: "nats-serverx", PID: self}}}}).natsRSS(); got != 0 {
		t.Errorf("RSS without a nats-server: %.1f MiB, want 0", got)
	}
}
