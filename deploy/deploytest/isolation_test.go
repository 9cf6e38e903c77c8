//go:build docker

package deploytest

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// What each container of the compose files may read: the kez-keys.conf
// variables of the seeds in its mounts. nats-server needs no seed (only
// the public keys of kez-keys.conf); the admin and sys seeds are the
// operator's and are in no running container.
var (
	chatServerSeeds = []string{"KEZ_CALLOUT_ISSUER", "KEZ_CALLOUT_NKEY", "KEZ_CALLOUT_XKEY", "KEZ_CHAT_SERVER_NKEY"}
	sigServerSeeds  = []string{"KEZ_SIG_SERVER_NKEY"}
)

var confLine = regexp.MustCompile(`(?m)^(KEZ_[A-Z_]+): "([A-Z0-9]+)"$`)

// publicKeys parses the kez-keys.conf that `kez-chat-server keys` prints
// into public key -> variable.
func publicKeys(t testing.TB, conf string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, l := range confLine.FindAllStringSubmatch(conf, -1) {
		m[l[2]] = l[1]
	}
	if len(m) != 7 {
		t.Fatalf("kez-keys.conf with %d keys:\n%s", len(m), conf)
	}
	return m
}

// seedPattern matches an nkey seed (user, account or curve) in a file.
var seedPattern = regexp.MustCompile(`S[UAXONC][A-Z2-7]{56}`)

// readableSeeds returns, sorted, the kez-keys.conf variables (or "other
// <public key>") of every nkey seed in the files of a container's mounts:
// what the container's process can read. The images are FROM scratch, so
// the mounts are the only files besides the binary.
func readableSeeds(t testing.TB, container string, pubs map[string]string) []string {
	t.Helper()
	out, err := runDocker("inspect", "-f", "{{range .Mounts}}{{println .Destination}}{{end}}", container)
	if err != nil {
		t.Fatalf("inspect %s: %v %s", container, err, out)
	}
	var found []string
	for _, dest := range strings.Fields(out) {
		cmd := exec.Command("docker", "cp", container+":"+dest, "-")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		tarball, err := cmd.Output()
		if err != nil {
			t.Fatalf("docker cp %s:%s: %v %s", container, dest, err, stderr.String())
		}
		tr := tar.NewReader(bytes.NewReader(tarball))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s:%s: %v", container, dest, err)
			}
			if h.Typeflag != tar.TypeReg || h.Size > 1<<20 {
				continue
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			for _, seed := range seedPattern.FindAll(b, -1) {
				kp, err := nkeys.FromSeed(seed)
				if err != nil {
					continue
				}
				pub, _ := kp.PublicKey()
				name, ok := pubs[pub]
				if !ok {
					name = "other " + pub
				}
				if !slices.Contains(found, name) {
					found = append(found, name)
				}
			}
		}
	}
	slices.Sort(found)
	return found
}

// checkSeeds fails unless each container holds exactly its own seeds.
func checkSeeds(t testing.TB, pubs map[string]string, want map[string][]string) {
	t.Helper()
	for container, seeds := range want {
		if got := readableSeeds(t, container, pubs); !slices.Equal(got, seeds) {
			t.Errorf("%s can read the seeds %q, want only %q", container, got, seeds)
		}
	}
}

// checkMonitoringPrivate fails unless a nats container's monitoring
// answers inside its own network namespace and refuses a connection from
// another container on the compose network (/connz lists every user's
// key and address to whoever asks).
func checkMonitoringPrivate(t testing.TB, natsContainer, network, host string) {
	t.Helper()
	img := "kez-chat-server:" + kezTag
	if out, err := runDocker("run", "--rm", "--network", "container:"+natsContainer, img,
		"healthcheck", "--wait", "20s", "--url", "http://127.0.0.1:8222/healthz"); err != nil {
		t.Fatalf("monitoring inside %s: %v %s", natsContainer, err, out)
	}
	out, err := runDocker("run", "--rm", "--network", network, img,
		"healthcheck", "--url", "http://"+host+":8222/healthz")
	if err == nil {
		t.Fatalf("another container on %s reaches %s:8222 (nats-server monitoring)", network, host)
	}
	// Refused by the nats container itself, which is there: not a name
	// that does not resolve, which would prove nothing.
	if !strings.Contains(out, "connection refused") {
		t.Fatalf("another container asking %s:8222: %v %s, want connection refused", host, err, out)
	}
}

// adminConn connects to url as the operator's admin user, with the seed
// copied out of the `keys` volume through the (exited) init container.
func (s *stack) adminConn(url string) *nats.Conn {
	s.t.Helper()
	seed := filepath.Join(s.t.TempDir(), "admin.nk")
	if out, err := runDocker("cp", s.container("init", 1)+":/keys/admin.nk", seed); err != nil {
		s.t.Fatalf("copy the admin seed: %v %s", err, out)
	}
	if err := os.Chmod(seed, 0o600); err != nil {
		s.t.Fatal(err)
	}
	opt, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		s.t.Fatal(err)
	}
	return connect(s.t, url, "admin", opt)
}

// removeVolumes removes a stopped project's volumes by their compose names.
func (s *stack) removeVolumes(names ...string) {
	s.t.Helper()
	for _, n := range names {
		if out, err := runDocker("volume", "rm", s.project+"_"+n); err != nil {
			s.t.Fatalf("docker volume rm %s_%s: %v %s", s.project, n, err, out)
		}
	}
}
