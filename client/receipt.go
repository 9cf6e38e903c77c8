package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"kez.lat/kez"
	"kez.lat/kez/message"
)

// TypeReceipt is the plaintext type of delivery and read receipts
// (docs/kez-receipts.md).
const TypeReceipt = "receipt"

// Receipt kinds.
const (
	// ReceiptDelivered: the messages reached the recipient's device.
	ReceiptDelivered = "delivered"
	// ReceiptRead: the recipient had them on screen.
	ReceiptRead = "read"
)

// MaxReceiptIDs bounds the message ids of one receipt.
const MaxReceiptIDs = 256

// ErrBadReceipt: a receipt plaintext that does not follow
// docs/kez-receipts.md.
var ErrBadReceipt = errors.New("malformed receipt")

// Receipt says that the messages IDs (as [Entry.ID] shows them) that
// its sender received from its recipient were delivered or read. It
// travels end-to-end encrypted like any message, so the servers learn
// nothing but that a message went.
type Receipt struct {
	Kind string   `json:"kind"`
	IDs  []string `json:"ids"`
}

// Validate reports whether r is a receipt to send or accept: a known
// kind and 1 to [MaxReceiptIDs] message ids (base64 of 16 bytes); it
// returns [ErrBadReceipt] otherwise.
func (r Receipt) Validate() error {
	if r.Kind != ReceiptDelivered && r.Kind != ReceiptRead {
		return fmt.Errorf("%w: kind %q", ErrBadReceipt, r.Kind)
	}
	if len(r.IDs) == 0 || len(r.IDs) > MaxReceiptIDs {
		return fmt.Errorf("%w: %d ids, want 1 to %d", ErrBadReceipt, len(r.IDs), MaxReceiptIDs)
	}
	for _, id := range r.IDs {
		if b, err := base64.StdEncoding.Strict().DecodeString(id); err != nil || len(b) != message.IDSize {
			return fmt.Errorf("%w: id %q is not a message id", ErrBadReceipt, id)
		}
	}
	return nil
}

// Plaintext returns the message plaintext of r.
func (r Receipt) Plaintext() (message.Plaintext, error) {
	if err := r.Validate(); err != nil {
		return message.Plaintext{}, err
	}
	b, err := json.Marshal(struct {
		Type string   `json:"type"`
		Kind string   `json:"kind"`
		IDs  []string `json:"ids"`
	}{TypeReceipt, r.Kind, r.IDs})
	if err != nil {
		return message.Plaintext{}, err
	}
	return message.NewPlaintext(b)
}

// ParseReceipt returns the receipt a plaintext of type [TypeReceipt]
// carries; [ErrBadReceipt] if it is malformed. Members other than type,
// kind and ids are ignored (later versions may add some).
func ParseReceipt(plaintext []byte) (Receipt, error) {
	var r struct {
		Type string   `json:"type"`
		Kind string   `json:"kind"`
		IDs  []string `json:"ids"`
	}
	dec := json.NewDecoder(bytes.NewReader(plaintext))
	if err := dec.Decode(&r); err != nil {
		return Receipt{}, fmt.Errorf("%w: %v", ErrBadReceipt, err)
	}
	if r.Type != TypeReceipt {
		return Receipt{}, fmt.Errorf("%w: type %q", ErrBadReceipt, r.Type)
	}
	rc := Receipt{Kind: r.Kind, IDs: r.IDs}
	return rc, rc.Validate()
}

// SendReceipt sends receipt r to contact h. Unlike [Client.Send] it never
// pins a new contact and asks no server for h's key (a receipt answers
// a message that just came from the pinned key), and it is not kept in
// the history: a receipt is worth nothing once sent.
func (c *Client) SendReceipt(ctx context.Context, h kez.Handle, r Receipt) error {
	pt, err := r.Plaintext()
	if err != nil {
		return err
	}
	if _, err := c.p.Contact(h); err != nil {
		return err
	}
	_, err = c.Send(ctx, h, pt, SendOptions{NoRefresh: true, NoHistory: true})
	return err
}
