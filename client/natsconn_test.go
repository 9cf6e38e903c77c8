package client_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/sigchain"
	"kez.lat/kez/strictjson"
)

// hostileBroker is a listener that speaks just enough NATS to obtain a
// signature: it sends an INFO with a nonce of its choosing and records the
// sig of the CONNECT that comes back (if any).
func hostileBroker(t *testing.T, nonce string) (url string, sigs <-chan []byte) {
	t.Helper()
	return fakeBroker(t, nonce, "-ERR 'Authorization Violation'\r\n")
}

// fakeBroker is hostileBroker answering a CONNECT with answer.
func fakeBroker(t *testing.T, nonce, answer string) (url string, sigs <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan []byte, 16)
	info, _ := json.Marshal(map[string]any{
		"server_id": "NHOSTILE", "server_name": "hostile", "version": "2.15.2", "proto": 1,
		"host": "127.0.0.1", "port": ln.Addr().(*net.TCPAddr).Port, "max_payload": 1 << 20,
		"auth_required": true, "nonce": nonce,
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Write([]byte("INFO " + string(info) + "\r\n"))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				var connect struct {
					Sig string `json:"sig"`
				}
				if rest, ok := strings.CutPrefix(line, "CONNECT "); ok && json.Unmarshal([]byte(rest), &connect) == nil && connect.Sig != "" {
					if sig, err := base64.RawURLEncoding.DecodeString(connect.Sig); err == nil {
						out <- sig
					}
				}
				c.Write([]byte(answer))
			}()
		}
	}()
	return "nats://" + ln.Addr().String(), out
}

// TestSignInUnanswered: a broker that pings before it answers a sign-in
// (nats-server does when the auth callout takes its whole timeout) has
// refused it: the error is an authorization error, not a protocol one.
func TestSignInUnanswered(t *testing.T) {
	url, _ := fakeBroker(t, "abcdefghijklmno", "PING\r\n")
	key, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := client.ConnectNATS(url, key)
	if err == nil {
		nc.Close()
		t.Fatal("signed in to a broker that answered nothing")
	}
	if !errors.Is(err, nats.ErrAuthorization) || !errors.Is(err, client.ErrSignInUnanswered) {
		t.Fatalf("ConnectNATS = %v, want an unanswered sign-in", err)
	}
	// Another surprise is not taken for one, whatever it says.
	url, _ = fakeBroker(t, "abcdefghijklmno", "+OK expected 'PONG', got 'PING'\r\n")
	if _, err = client.ConnectNATS(url, key); errors.Is(err, client.ErrSignInUnanswered) {
		t.Fatalf("ConnectNATS after another line = %v, taken for an unanswered sign-in", err)
	}
}

// TestHostileBrokerNonce: a broker that sends, as its connect nonce, the
// bytes of a sigchain event, a registration, a manifest or a message
// under their own contexts gets no signature at all, and the signature it
// gets for a nonce of the real form verifies as none of those.
func TestHostileBrokerNonce(t *testing.T) {
	key, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public()
	h, _ := kez.ParseHandle("alice", "kez.lat")
	now := time.Now()
	event, err := sigchain.Next(key, nil, sigchain.TypeAddEndpoint,
		sigchain.NATSEndpoint{URL: "nats://evil.example:4222", Inbox: "kez.inbox." + pub.Hex()}, now)
	if err != nil {
		t.Fatal(err)
	}
	eventPayload := event.Payload()
	regMsg := kez.RegistrationMessage(h, pub, now.Unix())
	manifest := []byte(`{"v":1,"owner":"` + pub.String() + `","entries":[]}`)
	envelope := []byte("kez-msg-v2\x00" + strings.Repeat("\x01", 100))

	// forged reports which kez object sig (obtained for signed) would be.
	forged := func(signed, sig []byte) string {
		if ev, err := sigchain.ParseEvent(strictjson.Signed{Payload: eventPayload, Sig: sig}.Marshal()); err == nil && ev.Verify(pub) == nil {
			return "a sigchain event"
		}
		if kez.VerifyRegistration(h, pub, now.Unix(), sig) {
			return "a registration"
		}
		for _, p := range kez.Purposes() {
			if p == kez.PurposeNATSAuth {
				continue
			}
			if m, ok := strings.CutPrefix(string(signed), p.Context()); ok && pub.Verify(p, []byte(m), sig) {
				return "a " + p.String() + " signature"
			}
		}
		return ""
	}

	hostile := map[string][]byte{
		"sigchain event": kez.PurposeSigchain.Message(eventPayload),
		"registration":   kez.PurposeRegistration.Message(regMsg),
		"manifest":       kez.PurposeManifest.Message(manifest),
		"message v1":     kez.PurposeMessageV1.Message(envelope),
		"message v2":     kez.PurposeMessageV2.Message(envelope),
		"nats auth":      kez.PurposeNATSAuth.Message([]byte("AAAAAAAAAAAAAAA")),
		"too long":       []byte(strings.Repeat("A", 65)),
	}
	for name, nonce := range hostile {
		t.Run(name, func(t *testing.T) {
			url, sigs := hostileBroker(t, string(nonce))
			_, err := client.ConnectNATS(url, key, nats.MaxReconnects(0), nats.Timeout(2*time.Second))
			if !errors.Is(err, client.ErrBadNonce) {
				t.Errorf("ConnectNATS = %v, want ErrBadNonce", err)
			}
			select {
			case sig := <-sigs:
				t.Errorf("the broker got a signature of %q", nonce)
				if what := forged(nonce, sig); what != "" {
					t.Errorf("... and it verifies as %s", what)
				}
			default:
			}
		})
	}

	t.Run("nonce of the server's form", func(t *testing.T) {
		nonce := "a1B2c3D4e5F6g7-"
		url, sigs := hostileBroker(t, nonce)
		if _, err := client.ConnectNATS(url, key, nats.MaxReconnects(0), nats.Timeout(2*time.Second)); err == nil {
			t.Fatal("connected to a broker that refuses everyone")
		}
		var sig []byte
		select {
		case sig = <-sigs:
		case <-time.After(5 * time.Second):
			t.Fatal("the client sent no signature for a well-formed nonce")
		}
		if !pub.Verify(kez.PurposeNATSAuth, []byte(nonce), sig) {
			t.Errorf("the sign-in signature does not verify for kez-nats-auth-v1")
		}
		if what := forged([]byte(nonce), sig); what != "" {
			t.Errorf("the sign-in signature verifies as %s", what)
		}
	})
}

func TestValidNATSNonce(t *testing.T) {
	for _, tt := range []struct {
		nonce string
		ok    bool
	}{
		{"a1B2c3D4e5F6g7-", true},
		{"_", true},
		{strings.Repeat("x", 64), true},
		{"", false},
		{strings.Repeat("x", 65), false},
		{"abc=", false},
		{"ab+c", false},
		{"kez-sigchain-v1\x00{}", false},
		{"a\nb", false},
		{"ab cd", false},
	} {
		if got := client.ValidNATSNonce([]byte(tt.nonce)); got != tt.ok {
			t.Errorf("ValidNATSNonce(%q) = %v, want %v", tt.nonce, got, tt.ok)
		}
	}
}

// TestReconnectClosesFailedAttempts: a reconnect attempt that the broker
// refuses after the dial (the callout timed out or said no) is closed by
// the client before the next one. nats.go alone leaves each such socket
// open until a garbage collection (kez-load ran out of fds that way in a
// reconnect storm).
func TestReconnectClosesFailedAttempts(t *testing.T) {
	key, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	info, _ := json.Marshal(map[string]any{
		"server_id": "NREFUSE", "server_name": "refuse", "version": "2.15.2", "proto": 1,
		"host": "127.0.0.1", "port": ln.Addr().(*net.TCPAddr).Port, "max_payload": 1 << 20,
		"auth_required": true, "nonce": "a1B2c3D4e5F6g7-",
	})
	// closed receives, for every refused attempt, whether the client closed
	// it within 5 s.
	closed := make(chan bool, 64)
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(n int, c net.Conn) {
				defer c.Close()
				c.Write([]byte("INFO " + string(info) + "\r\n"))
				r := bufio.NewReader(c)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := r.ReadString('\n'); err != nil { // CONNECT
					return
				}
				if n == 0 {
					// The first connection is let in, then dropped.
					c.Write([]byte("PONG\r\n"))
					time.Sleep(300 * time.Millisecond)
					return
				}
				c.Write([]byte("-ERR 'Authorization Violation'\r\n"))
				// Keep this end open: does the client close its own?
				for {
					if _, err := r.ReadString('\n'); err != nil {
						var ne net.Error
						closed <- !(errors.As(err, &ne) && ne.Timeout())
						return
					}
				}
			}(n, c)
		}
	}()
	nc, err := client.ConnectNATS("nats://"+ln.Addr().String(), key, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for i := range 3 {
		select {
		case ok := <-closed:
			if !ok {
				t.Errorf("refused reconnect attempt %d: the client left its socket open for 5 s", i+1)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d refused reconnect attempts in 20 s", i)
		}
	}
}
