package chatcmd

import (
	"context"
	"fmt"
	"time"

	"kez.lat/kez/client"
	"kez.lat/kez/cmd/kez-chat/display"
	"kez.lat/kez/sigchain"
)

type profileCmd struct {
	Handle    string `arg:"" predictor:"contact" help:"Contact whose profile to show (@bob)."`
	NoRefresh bool   `name:"no-refresh" help:"Show the pinned state without asking the contact's server for the current sigchain."`
}

// profileJSON is the JSON form of a profile.
type profileJSON struct {
	Contact      contactJSON           `json:"contact"`
	SafetyNumber string                `json:"safety_number"`
	ChainSeqno   uint64                `json:"chain_seqno"`
	ChainCtime   int64                 `json:"chain_ctime"`
	NATS         []string              `json:"nats"`
	P2P          []string              `json:"p2p"`
	SharedFiles  *sigchain.SharedFiles `json:"shared_files,omitempty"`
	// Claims are the contact's own statements; kez verifies none.
	Claims   []sigchain.Claim `json:"claims"`
	Verified bool             `json:"claims_verified"`
}

func (c *profileCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		h, err := handleArg(cl, c.Handle)
		if err != nil {
			return err
		}
		ct, err := cl.Profile().Contact(h)
		if err != nil {
			return &client.HintError{Err: err, Hints: []string{"kez-chat add " + show(cl, h) + " pins the key and verifies the sigchain first"}}
		}
		if !c.NoRefresh {
			if _, err := cl.Refresh(ctx, ct); err != nil {
				a.errf("kez-chat: note: showing the pinned state; the server was not asked: %v\n", err)
			}
		}
		v, err := cl.Verify(h)
		if err != nil {
			return err
		}
		if a.g.JSON {
			st := v.Contact.Chain
			j := profileJSON{Contact: contactOf(v.Contact), SafetyNumber: v.SafetyNumber, ChainSeqno: st.Tail.Seqno,
				ChainCtime: st.Ctime, NATS: []string{}, P2P: []string{}, SharedFiles: st.SharedFiles, Claims: st.Claims}
			for _, n := range st.NATS {
				j.NATS = append(j.NATS, n.URL)
			}
			for _, p := range st.P2P {
				j.P2P = append(j.P2P, p.PeerID)
			}
			if j.Claims == nil {
				j.Claims = []sigchain.Claim{}
			}
			return writeJSON(a.out, j)
		}
		fmt.Fprintln(a.out, display.Lines(display.Profile(cl.Domain(), v, time.Local)))
		return nil
	})
}

type claimCmd struct {
	Add    claimAddCmd    `cmd:"" help:"Publish an identity claim in your sigchain (e.g. github alice-gh --proof URL)."`
	Revoke claimRevokeCmd `cmd:"" help:"Withdraw one of your claims."`
	List   claimListCmd   `cmd:"" help:"List your claims."`
}

type claimAddCmd struct {
	Kind  string `arg:"" help:"What the claim is about: a lowercase name such as github, dns, nostr, mastodon."`
	Value string `arg:"" help:"The identity claimed there: an account name, a domain, a key."`
	Proof string `required:"" help:"Where the proof is (a URL, a DNS TXT record, a note id); contacts see it next to the claim."`
}

func (c *claimAddCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		acct, err := cl.AddClaim(ctx, sigchain.Claim{Kind: c.Kind, Value: c.Value, Proof: c.Proof})
		if err != nil {
			return err
		}
		return printClaims(a, cl, acct.Chain.Claims)
	})
}

type claimRevokeCmd struct {
	Kind  string `arg:"" help:"The claim's kind."`
	Value string `arg:"" help:"The claim's value."`
}

func (c *claimRevokeCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		acct, err := cl.RevokeClaim(ctx, c.Kind, c.Value)
		if err != nil {
			return err
		}
		return printClaims(a, cl, acct.Chain.Claims)
	})
}

type claimListCmd struct{}

func (c *claimListCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, cl *client.Client) error {
		cls, err := cl.Claims(ctx)
		if err != nil {
			return err
		}
		return printClaims(a, cl, cls)
	})
}

func printClaims(a *app, cl *client.Client, cls []sigchain.Claim) error {
	if a.g.JSON {
		if cls == nil {
			cls = []sigchain.Claim{}
		}
		return writeJSON(a.out, cls)
	}
	acct, err := cl.Account()
	if err != nil {
		return err
	}
	fmt.Fprintln(a.out, display.Lines(display.Claims(show(cl, acct.Handle), cls)))
	return nil
}
