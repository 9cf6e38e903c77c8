//go:build bench

package bench_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// quicWire is the ceiling of every QUIC row: quic-go alone (the QUIC
// libp2p runs on, with libp2p's flow-control windows), one stream over
// loopback, memory to discard, no libp2p, no Bao, no decryption. MiB/s.
func quicWire(t *testing.T, size int64) float64 {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	const alpn = "kez-bench"
	conf := &quic.Config{MaxStreamReceiveWindow: 10 << 20, MaxConnectionReceiveWindow: 15 << 20}
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: []string{alpn}}, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			got <- err
			return
		}
		defer c.CloseWithError(0, "")
		s, err := c.AcceptStream(ctx)
		if err == nil {
			_, err = io.Copy(io.Discard, s)
		}
		got <- err
	}()
	start := time.Now()
	c, err := quic.DialAddr(ctx, ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}}, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, copyBuf)
	for i := range buf {
		buf[i] = byte(mrand.Uint32())
	}
	if _, err := io.Copy(s, &repeatReader{buf: buf, left: size}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	return mibPerSec(size, time.Since(start))
}
