package blob

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"lukechampine.com/blake3/bao"
)

// FuzzOutboardTee writes arbitrary bytes, in arbitrary pieces, to an
// outboardTee as a peer's stream would reach it: it must not panic and
// never write more than an outboard's size; given a genuine combined
// encoding, it writes exactly the outboard bao.Encode computes.
func FuzzOutboardTee(f *testing.F) {
	for _, n := range []int{1, GroupSize, GroupSize + 1, 5*GroupSize - 7} {
		f.Add(uint32(n), uint8(7), []byte{})
	}
	f.Add(uint32(3*GroupSize), uint8(0), []byte("not an encoding"))
	f.Fuzz(func(t *testing.T, size uint32, step uint8, junk []byte) {
		n := int64(size) % (40 * GroupSize)
		if n == 0 {
			n = 1
		}
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*7 + int(step))
		}
		combined, _ := bao.EncodeBuf(data, Group, false)
		outboard, _ := bao.EncodeBuf(data, Group, true)
		in := combined
		if len(junk) > 0 { // garbage spliced into the stream
			at := int(step) * len(combined) / 256
			in = append(append(append([]byte{}, combined[:at]...), junk...), combined[at:]...)
		}
		path := filepath.Join(t.TempDir(), "ob")
		tee, err := newOutboardTee(path, n)
		if err != nil {
			t.Fatal(err)
		}
		defer tee.close()
		piece := int(step)%4096 + 1
		var werr error
		for p := in; len(p) > 0 && werr == nil; {
			c := min(piece, len(p))
			_, werr = tee.Write(p[:c])
			p = p[c:]
		}
		ferr := tee.finish()
		if tee.kept > OutboardSize(n) {
			t.Fatalf("kept %d bytes, more than an outboard of %d", tee.kept, OutboardSize(n))
		}
		if len(junk) > 0 {
			if werr == nil && ferr == nil {
				// The tee cannot tell, Decode does: but the shape is
				// the size's, so only the bytes of nodes differ.
				got, _ := os.ReadFile(path)
				if int64(len(got)) != OutboardSize(n) {
					t.Fatalf("outboard of %d bytes, want %d", len(got), OutboardSize(n))
				}
			}
			return
		}
		if werr != nil || ferr != nil {
			t.Fatalf("genuine encoding of %d bytes: write %v, finish %v", n, werr, ferr)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, outboard) {
			t.Fatalf("outboard of %d bytes differs from bao.Encode's (%v)", n, err)
		}
	})
}

// TestOutboardTeeShort: an encoding cut short leaves an outboard that
// finish refuses.
func TestOutboardTeeShort(t *testing.T) {
	data := bytes.Repeat([]byte{1}, 3*GroupSize+5)
	combined, _ := bao.EncodeBuf(data, Group, false)
	tee, err := newOutboardTee(filepath.Join(t.TempDir(), "ob"), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tee.Write(combined[:len(combined)-GroupSize]); err != nil {
		t.Fatal(err)
	}
	if err := tee.finish(); err == nil {
		t.Fatal("finish accepted an encoding cut short")
	}
	if _, err := tee.Write(combined); err == nil {
		t.Fatal("Write accepted bytes past the encoding")
	}
}
