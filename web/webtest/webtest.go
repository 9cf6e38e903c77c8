// Package webtest holds the HTTP helpers of the servers' end-to-end tests.
package webtest

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// Answer is an HTTP answer read whole.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// Code returns the code of a JSON error answer, failing the test if the
// body is not one (with a message).
func (a Answer) Code(t testing.TB) string {
	t.Helper()
	var e struct{ Error, Code string }
	if err := json.Unmarshal(a.Body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", a.Body, err)
	}
	if e.Error == "" {
		t.Fatalf("error body %q has no message", a.Body)
	}
	return e.Code
}

// Do sends one request and reads the answer, failing the test on a
// transport error.
func Do(t testing.TB, method, url string, body []byte) Answer {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return Send(t, req)
}

// Send sends req (one with headers of its own) and reads the answer,
// failing the test on a transport error.
func Send(t testing.TB, req *http.Request) Answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Logger logs warnings and errors into the test's output.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(writer{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type writer struct{ t testing.TB }

func (w writer) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
