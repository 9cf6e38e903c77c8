package display

import (
	"fmt"
	"strings"
	"time"

	"kez.lat/kez/client"
	"kez.lat/kez/sigchain"
)

// Profile lays out what kez-chat knows of a contact, for user home at
// location loc: handle, key, safety number, pinned since, the sigchain's
// summary, and the identity claims, marked as the contact's own word.
// Everything that came from the contact's chain is made inert.
func Profile(home string, v client.Verification, loc *time.Location) []string {
	ct := v.Contact
	who := Handle(home, ct.Handle)
	out := []string{
		fmt.Sprintf("%s (%s)", who, ct.Handle),
		"  key:            " + ct.Key.String(),
		"  fingerprint:    " + client.Fingerprint(ct.Key),
		"  safety number:  " + v.SafetyNumber,
		"  pinned since:   " + time.Unix(ct.AddedAt, 0).In(loc).Format("2006-01-02 15:04"),
	}
	if ct.ChangedKey != nil {
		out = append(out, "  KEY CHANGED:    the server now names "+ct.ChangedKey.String()+" (sending refused until trust)")
	}
	st := ct.Chain
	chain := "empty"
	if st.Tail.Seqno > 0 {
		chain = fmt.Sprintf("%d events, last signed %s", st.Tail.Seqno, time.Unix(st.Ctime, 0).In(loc).Format("2006-01-02 15:04"))
	}
	out = append(out, "  sigchain:       "+chain)
	for _, n := range st.NATS {
		out = append(out, "  inbox:          "+Line(n.URL))
	}
	for _, p := range st.P2P {
		out = append(out, fmt.Sprintf("  p2p node:       %s (%d addresses)", Line(p.PeerID), len(p.Addrs)))
	}
	if sf := st.SharedFiles; sf != nil {
		out = append(out, fmt.Sprintf("  shared files:   manifest %s (%s)", Line(sf.Manifest[:min(len(sf.Manifest), 16)]), Size(sf.Size)))
	}
	return append(out, Claims(who, st.Claims)...)
}

// Claims lays out identity claims as what owner says, not verified by
// kez.
func Claims(owner string, cls []sigchain.Claim) []string {
	if len(cls) == 0 {
		return []string{"  claims:         none"}
	}
	out := []string{"  claims made by " + owner + " (shown as stated; kez verifies none of them):"}
	for _, c := range cls {
		line := fmt.Sprintf("    %-8s %s", Line(c.Kind), Line(c.Value))
		if c.Proof != "" {
			line += "  proof: " + Line(c.Proof)
		}
		out = append(out, line)
	}
	return out
}

// Lines joins lines for printing.
func Lines(lines []string) string { return strings.Join(lines, "\n") }
