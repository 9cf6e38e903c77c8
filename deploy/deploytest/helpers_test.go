//go:build docker

package deploytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/message"
)

// natsTag is the nats image tag the compose files name; it must match the
// nats-server version pinned in tools.mod (checked by TestImageTagsPinned).
const natsTag = "nats:2.15.2"

// kezTag is the tag of our images under test: KEZ_TAG, as `make images`
// takes it (dev by default).
var kezTag = func() string {
	if t := os.Getenv("KEZ_TAG"); t != "" {
		return t
	}
	return "dev"
}()

var deployDir = func() string {
	d, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	return d
}()

// stack is one compose project started by a test and removed (volumes
// included) when the test ends.
type stack struct {
	t       testing.TB
	project string
	files   []string
	env     []string
}

func newStack(t testing.TB, project string, env map[string]string, files ...string) *stack {
	t.Helper()
	requireDocker(t)
	s := &stack{t: t, project: fmt.Sprintf("%s-%d", project, os.Getpid()), files: files}
	s.env = append(os.Environ(), "KEZ_TAG="+kezTag, "BIND=127.0.0.1", "LOG_FORMAT=text")
	for k, v := range env {
		s.env = append(s.env, k+"="+v)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := s.compose("logs", "--no-color", "--tail", "40")
			t.Logf("logs of %s:\n%s", s.project, out)
		}
		if out, err := s.compose("down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	return s
}

func (s *stack) compose(args ...string) (string, error) {
	full := []string{"compose", "-p", s.project}
	for _, f := range s.files {
		full = append(full, "-f", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append(full, args...)...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs docker compose and fails the test on an error.
func (s *stack) must(args ...string) string {
	s.t.Helper()
	out, err := s.compose(args...)
	if err != nil {
		s.t.Fatalf("docker compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// up runs `up -d --wait` with extra args and returns how long it took.
func (s *stack) up(args ...string) time.Duration {
	s.t.Helper()
	start := time.Now()
	s.must(append([]string{"up", "-d", "--wait", "--wait-timeout", "120"}, args...)...)
	return time.Since(start)
}

// url returns http://127.0.0.1:<host port> of a service's container port.
func (s *stack) url(service string, index, port int) string {
	s.t.Helper()
	out := strings.TrimSpace(s.must("port", "--index", fmt.Sprint(index), service, fmt.Sprint(port)))
	if _, _, err := net.SplitHostPort(out); err != nil {
		s.t.Fatalf("port of %s-%d: %q", service, index, out)
	}
	return "http://" + out
}

// tryURL is url without failing: "" while the container has no port.
func (s *stack) tryURL(service string, index, port int) string {
	out, err := s.compose("port", "--index", fmt.Sprint(index), service, fmt.Sprint(port))
	out = strings.TrimSpace(out)
	if _, _, perr := net.SplitHostPort(out); err != nil || perr != nil {
		return ""
	}
	return "http://" + out
}

// waitService waits until a replica's /v1/healthz answers 200 and returns
// its URL. A replica's host port is taken from a range and may change
// when its container restarts, so it is looked up again on every try.
func (s *stack) waitService(service string, index, port int, d time.Duration) string {
	s.t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if u := s.tryURL(service, index, port); u != "" {
			if code, _, _ := get(u + "/v1/healthz"); code == http.StatusOK {
				return u
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("%s-%d not healthy after %v", service, index, d)
	return ""
}

func (s *stack) natsURL(service string) string {
	return strings.Replace(s.url(service, 1, 4222), "http://", "nats://", 1)
}

// container returns the name of a service's container.
func (s *stack) container(service string, index int) string {
	return fmt.Sprintf("%s-%s-%d", s.project, service, index)
}

// runDocker runs a docker command (not compose).
func runDocker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	return string(out), err
}

func requireDocker(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err != nil {
		t.Fatalf("docker compose v2 is needed (make compose-install): %v\n%s", err, out)
	}
	for _, img := range []string{"kez-chat-server:" + kezTag, "kez-sig-server:" + kezTag, natsTag} {
		if out, err := exec.Command("docker", "image", "inspect", img).CombinedOutput(); err != nil {
			t.Fatalf("image %s missing (make images): %v\n%.200s", img, err, out)
		}
	}
}

// freePorts returns the first of n consecutive free ports on 127.0.0.1,
// below the kernel's usual ephemeral range (32768 on): a port there may
// be the local end of some connection, which docker's bind refuses.
func freePorts(t testing.TB, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		var b [2]byte
		rand.Read(b[:])
		base := 15000 + (int(b[0])<<8|int(b[1]))%(32768-15000-n)
		ok := true
		for p := base; p < base+n && ok; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func get(url string) (int, []byte, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// waitHealthy polls a /v1/healthz until it answers 200, for up to d.
func waitHealthy(t testing.TB, base string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if code, _, _ := get(base + "/v1/healthz"); code == http.StatusOK {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, body, err := get(base + "/v1/healthz")
	t.Fatalf("%s not healthy after %v: %d %s %v", base, d, code, body, err)
	return 0
}

// user is a handle with its key.
type user struct {
	name string
	key  *kez.PrivateKey
}

func newUser(t testing.TB, name string) user {
	t.Helper()
	k, err := kez.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return user{name: name, key: k}
}

// registrationBody is the signed body registering u on domain.
func registrationBody(t testing.TB, u user, domain string) []byte {
	t.Helper()
	h, err := kez.ParseHandle(u.name, domain)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(kez.NewRegistrationRequest(u.key, h, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func post(url string, body []byte) (int, []byte, error) {
	return postWith(httpClient, url, body)
}

func postWith(c *http.Client, url string, body []byte) (int, []byte, error) {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// register registers u through base and fails unless it answers 201.
func register(t testing.TB, base string, u user) {
	t.Helper()
	code, body, err := post(base+"/v1/register", registrationBody(t, u, "kez.lat"))
	if err != nil || code != http.StatusCreated {
		t.Fatalf("register %s at %s: %d %s %v", u.name, base, code, body, err)
	}
}

// lookup checks that base knows u with u's key.
func lookup(base string, u user) error {
	code, body, err := get(base + "/v1/u/" + u.name)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET /v1/u/%s: %d %s", u.name, code, body)
	}
	var rec struct {
		Primary kez.PublicKey `json:"primary"`
	}
	if err := json.Unmarshal(body, &rec); err != nil {
		return err
	}
	if !rec.Primary.Equal(u.key.Public()) {
		return fmt.Errorf("%s is bound to %s, want %s", u.name, rec.Primary, u.key.Public())
	}
	return nil
}

// waitLookup polls lookup for up to d (replicas project asynchronously).
func waitLookup(t testing.TB, base string, u user, d time.Duration) {
	t.Helper()
	var err error
	for start := time.Now(); time.Since(start) < d; time.Sleep(100 * time.Millisecond) {
		if err = lookup(base, u); err == nil {
			return
		}
	}
	t.Fatalf("look-up of %s at %s: %v", u.name, base, err)
}

// connectUser signs in to NATS as u, as client.ConnectNATS does: the key's
// nkey, the nonce signed with it, the auth callout of kez-chat-server.
func connectUser(t testing.TB, url string, u user) *nats.Conn {
	t.Helper()
	return connect(t, url, u.name, client.NATSAuth(u.key), nats.CustomInboxPrefix(kez.UserInboxPrefix(u.key.Public())))
}

// connect connects to url as who with opts, trying again for 20 s (the
// broker may still be starting), reconnecting for ever, and closes the
// connection at the end of the test.
func connect(t testing.TB, url, who string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append(opts, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	var (
		nc  *nats.Conn
		err error
	)
	for start := time.Now(); time.Since(start) < 20*time.Second; time.Sleep(200 * time.Millisecond) {
		if nc, err = nats.Connect(url, opts...); err == nil {
			t.Cleanup(nc.Close)
			return nc
		}
	}
	t.Fatalf("%s signs in to NATS at %s: %v", who, url, err)
	return nil
}

// sendErr hands a text message from from to to's inbox through the home
// server's door (stored once it returns nil).
func sendErr(nc *nats.Conn, from, to user, msg string) error {
	_, wire, err := message.Seal(message.NewIdentity(from.key), to.key.Public(), message.Text(msg), time.Now(), nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = (client.Inbox{NC: nc, Me: from.key.Public()}).Send(ctx, wire)
	return err
}

// send is sendErr that fails the test.
func send(t testing.TB, nc *nats.Conn, from, to user, msg string) {
	t.Helper()
	if err := sendErr(nc, from, to, msg); err != nil {
		t.Fatalf("send to %s: %v", to.name, err)
	}
}

// receive reads, opens and acknowledges every message waiting in u's
// inbox, and returns their texts.
func receive(t testing.TB, nc *nats.Conn, u user) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := message.NewIdentity(u.key)
	var got []string
	err := (client.Inbox{NC: nc, Me: u.key.Public()}).Drain(ctx, func(m client.InboxMsg) error {
		env, err := message.Parse(m.Data)
		if err != nil {
			return err
		}
		pt, err := env.Open(id, env.From)
		if err != nil {
			return err
		}
		got = append(got, pt.Body())
		return nil
	})
	if err != nil {
		t.Fatalf("%s reads their inbox: %v", u.name, err)
	}
	return got
}
