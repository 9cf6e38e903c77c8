package door

import (
	"errors"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
)

func gotAnswer(status, desc, pending, subject, seq string, data []byte) *nats.Msg {
	m := nats.NewMsg("_INBOX.x.1")
	set := func(k, v string) {
		if v != "" {
			m.Header.Set(k, v)
		}
	}
	set("Status", status)
	set("Description", desc)
	set("Nats-Num-Pending", pending)
	if subject != "" {
		set("Nats-Stream", "S")
	}
	set("Nats-Subject", subject)
	set("Nats-Sequence", seq)
	m.Data = data
	return m
}

func TestParseGot(t *testing.T) {
	for _, c := range []struct {
		name string
		m    *nats.Msg
		end  bool
		ok   bool
	}{
		{"message", gotAnswer("", "", "3", "kez.inbox.a.b", "42", []byte("x")), false, true},
		{"empty message", gotAnswer("", "", "0", "kez.inbox.a.b", "42", nil), false, true},
		{"end of batch", gotAnswer("204", "EOB", "0", "", "", nil), true, true},
		{"no messages", gotAnswer("404", "No Messages", "", "", "", nil), true, true},
		{"204 without EOB", gotAnswer("204", "", "", "", "", nil), false, false},
		{"timeout", gotAnswer("408", "Request Timeout", "", "", "", nil), false, false},
		{"no responders", gotAnswer("503", "", "", "", "", nil), false, false},
		{"not a batch", gotAnswer("", "", "", "kez.inbox.a.b", "42", []byte("x")), false, false},
		{"no subject", gotAnswer("", "", "1", "", "42", []byte("x")), false, false},
		{"no sequence", gotAnswer("", "", "1", "kez.inbox.a.b", "", []byte("x")), false, false},
		{"sequence 0", gotAnswer("", "", "1", "kez.inbox.a.b", "0", []byte("x")), false, false},
		{"bad sequence", gotAnswer("", "", "1", "kez.inbox.a.b", "-1", []byte("x")), false, false},
		{"other stream", func() *nats.Msg {
			m := gotAnswer("", "", "3", "kez.inbox.a.b", "42", []byte("x"))
			m.Header.Set("Nats-Stream", "T")
			return m
		}(), false, false},
		{"no stream", func() *nats.Msg {
			m := gotAnswer("", "", "3", "kez.inbox.a.b", "42", []byte("x"))
			m.Header.Del("Nats-Stream")
			return m
		}(), false, false},
	} {
		msg, end, err := parseGot(c.m, "S")
		if (err == nil) != c.ok || end != c.end {
			t.Errorf("%s: end %v, err %v; want end %v, ok %v", c.name, end, err, c.end, c.ok)
			continue
		}
		if err != nil && !errors.Is(err, errGetAnswer) {
			t.Errorf("%s: %v is not errGetAnswer", c.name, err)
		}
		if c.ok && !end && (msg.Subject != "kez.inbox.a.b" || msg.Sequence != 42) {
			t.Errorf("%s: %+v", c.name, msg)
		}
	}
}

// FuzzParseGot: any answer is a message with a subject and a sequence,
// the end, or an errGetAnswer; never a panic.
func FuzzParseGot(f *testing.F) {
	f.Add("", "", "3", "kez.inbox.a.b", "42", []byte("x"))
	f.Add("204", "EOB", "0", "", "", []byte{})
	f.Add("404", "No Messages", "", "", "", []byte{})
	f.Add("408", "Request Timeout", "", "", "", []byte{})
	f.Add("", "", "1", "s", "18446744073709551615", []byte("x"))
	f.Add("", "", "1", "s", "18446744073709551616", []byte("x"))
	f.Fuzz(func(t *testing.T, status, desc, pending, subject, seq string, data []byte) {
		m := nats.NewMsg("_INBOX.x.1")
		m.Header["Nats-Stream"] = []string{"S"}
		m.Header["Status"] = []string{status}
		m.Header["Description"] = []string{desc}
		m.Header["Nats-Num-Pending"] = []string{pending}
		m.Header["Nats-Subject"] = []string{subject}
		m.Header["Nats-Sequence"] = []string{seq}
		m.Data = data
		msg, end, err := parseGot(m, "S")
		switch {
		case err != nil:
			if !errors.Is(err, errGetAnswer) || end {
				t.Fatalf("err %v, end %v", err, end)
			}
		case end:
			if len(data) != 0 {
				t.Fatalf("a message with data taken for the end")
			}
		default:
			if msg.Subject == "" || msg.Sequence == 0 || pending == "" {
				t.Fatalf("accepted %+v", msg)
			}
			if n, perr := strconv.ParseUint(seq, 10, 64); perr != nil || n != msg.Sequence {
				t.Fatalf("sequence %q read as %d", seq, msg.Sequence)
			}
		}
	})
}

// TestGetAccept: an answer is held to its request: the stream's
// messages on the filter, from the sequence asked, rising, within the
// batch and byte bounds.
func TestGetAccept(t *testing.T) {
	q := getRequest{Seq: 10, NextFor: "kez.inbox.aa.*", Batch: 2, MaxBytes: 100}
	msg := func(subject string, seq uint64, n int) gotMsg {
		return gotMsg{Subject: subject, Sequence: seq, Data: make([]byte, n)}
	}
	first := []gotMsg{msg("kez.inbox.aa.bb", 10, 1)}
	for _, c := range []struct {
		name string
		out  []gotMsg
		size int
		m    gotMsg
		ok   bool
	}{
		{"first", nil, 0, msg("kez.inbox.aa.bb", 10, 500), true},
		{"next", first, 1, msg("kez.inbox.aa.cc", 11, 1), true},
		{"before the sequence asked", nil, 0, msg("kez.inbox.aa.bb", 9, 1), false},
		{"not rising", first, 1, msg("kez.inbox.aa.bb", 10, 1), false},
		{"another inbox", nil, 0, msg("kez.inbox.zz.bb", 10, 1), false},
		{"a prefix of the filter", nil, 0, msg("kez.inbox.aa", 10, 1), false},
		{"a token too many", nil, 0, msg("kez.inbox.aa.bb.cc", 10, 1), false},
		{"past the batch", append(first, msg("kez.inbox.aa.bb", 11, 1)), 2, msg("kez.inbox.aa.bb", 12, 1), false},
		{"past the bytes", first, 100, msg("kez.inbox.aa.bb", 11, 1), false},
	} {
		if err := q.accept(c.out, c.size, c.m); (err == nil) != c.ok || err != nil && !errors.Is(err, errGetAnswer) {
			t.Errorf("%s: %v, want ok %v", c.name, err, c.ok)
		}
	}
	for _, c := range []struct {
		filter, subject string
		ok              bool
	}{
		{"a.b", "a.b", true}, {"a.*", "a.b", true}, {"a.>", "a.b.c", true}, {"*.*", "a.b", true},
		{"a.b", "a.c", false}, {"a.*", "a", false}, {"a.*", "a.b.c", false}, {"a.>", "a", false},
		{"a.*", "a.", false}, {"a.b", "a.b.", false}, {"a", "", false}, {"a.>", "a.", false},
	} {
		if got := subjectMatches(c.filter, c.subject); got != c.ok {
			t.Errorf("subjectMatches(%q, %q) = %v", c.filter, c.subject, got)
		}
	}
}

// TestGetterOverflow: answers beyond what a get holds fail that get
// instead of being dropped from the middle of its page; answers to no
// get in hand are dropped.
func TestGetterOverflow(t *testing.T) {
	g := &getter{prefix: "_INBOX.x.", pending: map[string]*getReply{}}
	r := &getReply{ch: make(chan *nats.Msg, 3), overflow: make(chan struct{})}
	g.pending["7"] = r
	for range 3 {
		g.route(nats.NewMsg("_INBOX.x.7"))
	}
	select {
	case <-r.overflow:
		t.Fatal("overflow with room left")
	default:
	}
	g.route(nats.NewMsg("_INBOX.x.8")) // no such get
	g.route(nats.NewMsg("_INBOX.x.7"))
	g.route(nats.NewMsg("_INBOX.x.7")) // closing twice must not panic
	select {
	case <-r.overflow:
	default:
		t.Fatal("no overflow")
	}
	if len(r.ch) != 3 {
		t.Fatalf("%d answers held", len(r.ch))
	}
}
