package blob_test

import (
	"bytes"
	"testing"

	"lukechampine.com/blake3/bao"

	"kez.lat/kez/blob"
)

// FuzzDecode feeds arbitrary slices (what a peer sends) to Decode: it must
// not panic, and whatever it writes must be the blob's bytes of the range,
// all of them exactly when it returns nil.
func FuzzDecode(f *testing.F) {
	const size = 3*blob.GroupSize + 100
	data := pattern(size, 11)
	_, root := bao.EncodeBuf(data, blob.Group, true)
	h := blob.Hash(root)
	s := newStore(f)
	importBytes(f, s, data)
	for _, r := range [][2]uint32{{0, size}, {blob.GroupSize, 10}, {size - 1, 1}} {
		var slice bytes.Buffer
		if err := s.WriteSlice(&slice, h, int64(r[0]), int64(r[1])); err != nil {
			f.Fatal(err)
		}
		f.Add(slice.Bytes(), r[0], r[1])
	}
	f.Fuzz(func(t *testing.T, slice []byte, off, n uint32) {
		o, l := int64(off)%size, int64(n)%(size+1)
		var out bytes.Buffer
		err := blob.Decode(&out, bytes.NewReader(slice), h, size, o, l)
		if o+l > size || l == 0 {
			if err == nil {
				t.Fatalf("Decode accepted range [%d, %d) of %d", o, o+l, size)
			}
			return
		}
		if !bytes.Equal(out.Bytes(), data[o:o+int64(out.Len())]) {
			t.Fatalf("Decode wrote bytes that are not the blob's")
		}
		if err == nil && int64(out.Len()) != l {
			t.Fatalf("Decode returned nil after %d of %d bytes", out.Len(), l)
		}
	})
}
