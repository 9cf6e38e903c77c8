package integrity_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"kez.lat/kez/integrity"
)

// The RFC 6962 test vectors of certificate-transparency-go (merkle tree
// hashes of the first n of eight leaves), also computed by a plain
// recursive implementation of RFC 6962 section 2.1.
var rfc6962Leaves = [][]byte{
	{}, {0x00}, {0x10}, {0x20, 0x21}, {0x30, 0x31}, {0x40, 0x41, 0x42, 0x43},
	{0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57},
	{0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f},
}

var rfc6962Roots = []string{
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
	"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
	"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
	"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
	"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
	"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
	"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}

func TestTreeRFC6962Vectors(t *testing.T) {
	var tree integrity.Tree
	for n := 0; n <= len(rfc6962Leaves); n++ {
		if got := hex.EncodeToString(tree.Root().Bytes()); got != rfc6962Roots[n] {
			t.Errorf("root of %d leaves = %s, want %s", n, got, rfc6962Roots[n])
		}
		if n < len(rfc6962Leaves) {
			tree.Append(integrity.LeafHash(rfc6962Leaves[n]))
		}
	}
}

// TestTreeAgainstRecursive compares the compact range with the recursive
// definition for sizes that exercise every shape of the peaks.
func TestTreeAgainstRecursive(t *testing.T) {
	var leaves []integrity.Hash
	var tree integrity.Tree
	for n := 1; n <= 70; n++ {
		h := integrity.LeafHash([]byte{byte(n), byte(n >> 8)})
		leaves = append(leaves, h)
		tree.Append(h)
		if got, want := tree.Root(), recursiveRoot(leaves); got != want {
			t.Fatalf("root of %d leaves = %s, want %s", n, got, want)
		}
		if tree.Size != uint64(n) {
			t.Fatalf("size = %d, want %d", tree.Size, n)
		}
	}
	// A clone does not share the peaks.
	c := tree.Clone()
	tree.Append(integrity.LeafHash(nil))
	if c.Size != 70 || c.Root() != recursiveRoot(leaves) {
		t.Fatal("clone changed by an append to the original")
	}
}

func recursiveRoot(leaves []integrity.Hash) integrity.Hash {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := recursiveRoot(leaves[:k]), recursiveRoot(leaves[k:])
	var b bytes.Buffer
	b.WriteByte(1)
	b.Write(l[:])
	b.Write(r[:])
	return sha256.Sum256(b.Bytes())
}

func TestTreeNote(t *testing.T) {
	var tree integrity.Tree
	tree.Append(integrity.LeafHash(nil))
	want := "kez.test/registry\n1\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\n"
	if got := tree.Note(integrity.Origin("KEZ.test")); got != want {
		t.Fatalf("Note = %q, want %q", got, want)
	}
}

func checkpointOf(n int) integrity.Checkpoint {
	var cp integrity.Checkpoint
	for i := range n {
		cp.LastLeaf = integrity.LeafHash([]byte{byte(i)})
		cp.Tree.Append(cp.LastLeaf)
		cp.Seq = uint64(3*i + 3)
	}
	return cp
}

func TestCheckpointRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 5, 64} {
		cp := checkpointOf(n)
		b, err := json.Marshal(cp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := integrity.ParseCheckpoint(b)
		if err != nil {
			t.Fatalf("ParseCheckpoint(%s): %v", b, err)
		}
		if got.Seq != cp.Seq || got.Tree.Root() != cp.Tree.Root() || got.LastLeaf != cp.LastLeaf {
			t.Fatalf("round trip of %d events: %+v, want %+v", n, got, cp)
		}
	}
}

func TestParseCheckpointRefuses(t *testing.T) {
	good, _ := json.Marshal(checkpointOf(5))
	for _, tt := range []struct{ name, in string }{
		{"not json", "12"},
		{"peaks do not fit the size", `{"seq":9,"tree":{"size":3,"peaks":["` + integrity.LeafHash(nil).String() + `"]}}`},
		{"more events than sequences", `{"seq":1,"tree":{"size":2,"peaks":["` + integrity.LeafHash(nil).String() + `"]}}`},
		{"sequence without events", `{"seq":4,"tree":{"size":0}}`},
		{"short hash", `{"seq":1,"tree":{"size":1,"peaks":["AAAA"]}}`},
		{"trailing garbage in hash", string(bytes.Replace(good, []byte(`="`), []byte(`=x"`), 1))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := integrity.ParseCheckpoint([]byte(tt.in)); !errors.Is(err, integrity.ErrCheckpoint) {
				t.Fatalf("ParseCheckpoint(%q) = %v, want ErrCheckpoint", tt.in, err)
			}
		})
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	for _, n := range []int{0, 1, 3, 8} {
		b, _ := json.Marshal(checkpointOf(n))
		f.Add(b)
	}
	f.Add([]byte(`{"seq":1,"tree":{"size":1,"peaks":["AAAA"]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := integrity.ParseCheckpoint(b)
		if err != nil {
			if !errors.Is(err, integrity.ErrCheckpoint) {
				t.Fatalf("error %v does not wrap ErrCheckpoint", err)
			}
			return
		}
		// Whatever parses is usable: its root computes and it survives a
		// round trip.
		root := cp.Tree.Root()
		again, err := json.Marshal(cp)
		if err != nil {
			t.Fatal(err)
		}
		cp2, err := integrity.ParseCheckpoint(again)
		if err != nil || cp2.Tree.Root() != root || cp2.Seq != cp.Seq {
			t.Fatalf("round trip of %s: %v", again, err)
		}
		cp.Tree.Append(integrity.LeafHash(b))
	})
}

func TestFile(t *testing.T) {
	f := integrity.File{Path: filepath.Join(t.TempDir(), "checkpoint.json")}
	if cp, err := f.Load(); err != nil || cp.Seq != 0 {
		t.Fatalf("Load of no file = %+v, %v; want zero", cp, err)
	}
	cp := checkpointOf(7)
	if err := f.Save(cp); err != nil {
		t.Fatal(err)
	}
	got, err := f.Load()
	if err != nil || got.Seq != cp.Seq || got.Tree.Root() != cp.Tree.Root() {
		t.Fatalf("Load = %+v, %v; want %+v", got, err, cp)
	}
	if err := os.WriteFile(f.Path, []byte("{\"seq\":"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Load(); !errors.Is(err, integrity.ErrCheckpoint) {
		t.Fatalf("Load of a broken file = %v, want ErrCheckpoint", err)
	}
}
