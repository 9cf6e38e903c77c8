package filecrypt_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"testing"

	"kez.lat/kez/filecrypt"
	"kez.lat/kez/vectortest"
)

// vector is one kez-file-v1 test vector. The plaintext is vectorPlaintext(
// Size): byte i is i mod 251. Stream is the whole stream in hex for small
// files; StreamSHA256 is always set.
type vector struct {
	Key          string `json:"key"`
	Salt         string `json:"salt"`
	Size         int    `json:"size"`
	Stream       string `json:"stream,omitempty"`
	StreamSHA256 string `json:"stream_sha256"`
}

func vectorPlaintext(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func TestVectors(t *testing.T) {
	const path = "testdata/vectors.json"
	var vs []vector
	{
		for i, n := range []int{0, 1, 100, cs - 1, cs, cs + 1, 2*cs + 100} {
			key := bytes.Repeat([]byte{byte(0x10 + i)}, filecrypt.KeySize)
			salt := bytes.Repeat([]byte{byte(0x80 + i)}, filecrypt.SaltSize)
			k, _ := filecrypt.KeyFromBytes(key)
			var buf bytes.Buffer
			w, _ := filecrypt.NewWriter(&buf, k, bytes.NewReader(salt))
			w.Write(vectorPlaintext(n))
			w.Close()
			sum := sha256.Sum256(buf.Bytes())
			v := vector{Key: hex.EncodeToString(key), Salt: hex.EncodeToString(salt), Size: n, StreamSHA256: hex.EncodeToString(sum[:])}
			if n <= 100 {
				v.Stream = hex.EncodeToString(buf.Bytes())
			}
			vs = append(vs, v)
		}
	}
	b := vectortest.Check(t, path, vectortest.JSON(t, vs, false))
	vs = nil
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		key, _ := hex.DecodeString(v.Key)
		salt, _ := hex.DecodeString(v.Salt)
		k, err := filecrypt.KeyFromBytes(key)
		if err != nil {
			t.Fatal(err)
		}
		pt := vectorPlaintext(v.Size)
		var buf bytes.Buffer
		w, err := filecrypt.NewWriter(&buf, k, bytes.NewReader(salt))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(pt)
		w.Close()
		sum := sha256.Sum256(buf.Bytes())
		if got := hex.EncodeToString(sum[:]); got != v.StreamSHA256 {
			t.Errorf("size %d: stream sha256 %s, want %s", v.Size, got, v.StreamSHA256)
		}
		if v.Stream != "" && hex.EncodeToString(buf.Bytes()) != v.Stream {
			t.Errorf("size %d: stream differs from the vector", v.Size)
		}
		r, err := filecrypt.NewReader(bytes.NewReader(buf.Bytes()), k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, pt) {
			t.Errorf("size %d: decrypt = %d bytes, %v", v.Size, len(got), err)
		}
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
}
