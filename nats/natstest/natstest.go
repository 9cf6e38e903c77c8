// Package natstest runs the reference nats-server configuration
// (nats/nats.conf) embedded in tests, so that the callout, the
// permissions and the streams are tested against the real broker and the
// shipped config. It is imported by tests only: nats-server is never
// compiled into kez binaries.
package natstest

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"kez.lat/kez/nats/natskeys"
)

// Server is an embedded nats-server loaded from nats/nats.conf.
type Server struct {
	*server.Server
	// Dir holds nats.conf, keys/ (seeds and kez-keys.conf) and the
	// JetStream store.
	Dir      string
	tb       testing.TB
	port     int
	adjust   func(*server.Options)
	storeDir string // the JetStream store_dir in use
}

// ConfigPath returns the path of the repository's nats/nats.conf.
func ConfigPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "nats.conf")
}

// Start copies nats/nats.conf into a temporary folder, generates keys
// beside it, loads it with server.ProcessConfigFile (the binary's own
// parser) and starts it on a random loopback port. Only listen addresses,
// the store folder and logging are overridden.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartWith(tb, nil)
}

// StartWith is Start with a hook that may adjust the options loaded from
// nats/nats.conf before the server starts (benchmarks add baseline users
// this way; tests of the shipped config use Start).
func StartWith(tb testing.TB, adjust func(*server.Options)) *Server {
	tb.Helper()
	s := &Server{Dir: configDir(tb), tb: tb, adjust: adjust}
	s.start()
	tb.Cleanup(func() {
		s.Stop()
		s.removeStore()
	})
	return s
}

// removeStore removes the store once the server stopped, trying again
// for a few seconds: a JetStream request the server took just before
// its shutdown (a stream created or deleted) can still be writing the
// store's folders, and the test's own removal of its temporary folder
// would fail with "directory not empty".
func (s *Server) removeStore() {
	var err error
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err = os.RemoveAll(s.storeDir); err == nil {
			return
		}
	}
	s.tb.Errorf("remove the store: %v", err)
}

func (s *Server) start() {
	s.tb.Helper()
	opts, err := server.ProcessConfigFile(filepath.Join(s.Dir, "nats.conf"))
	if err != nil {
		s.tb.Fatalf("load nats.conf: %v", err)
	}
	opts.Host = "127.0.0.1"
	opts.Port = server.RANDOM_PORT
	if s.port != 0 {
		opts.Port = s.port
	}
	opts.HTTPHost = "127.0.0.1"
	opts.HTTPPort = 0
	opts.StoreDir = filepath.Join(s.Dir, "jetstream")
	opts.NoLog = true
	opts.NoSigs = true
	if s.adjust != nil {
		s.adjust(opts)
	}
	s.storeDir = opts.StoreDir
	ns, err := server.NewServer(opts)
	if err != nil {
		s.tb.Fatalf("new nats-server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		s.tb.Fatal("nats-server not ready within 10s")
	}
	s.Server = ns
	s.port = ns.Addr().(*net.TCPAddr).Port
}

// configDir returns a temporary folder holding a copy of nats/nats.conf
// and freshly generated keys beside it.
func configDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	conf, err := os.ReadFile(ConfigPath())
	if err != nil {
		tb.Fatalf("read nats.conf: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), conf, 0o644); err != nil {
		tb.Fatal(err)
	}
	if _, err := natskeys.EnsureKeys(filepath.Join(dir, "keys")); err != nil {
		tb.Fatalf("generate keys: %v", err)
	}
	return dir
}

// Stop shuts the server down and waits for it; safe to call twice.
func (s *Server) Stop() {
	if s.Server != nil && s.Server.Running() {
		s.Server.Shutdown()
		s.Server.WaitForShutdown()
	}
}

// Restart stops the server (if it runs) and starts it again on the same
// port with the same store, as a process restart would; it also starts a
// server after Stop or Crash.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	s.start()
}

// Crash stops the server leaving its store as kill -9 would: the store
// is copied while the server still runs, the server is shut down, and the
// copy replaces whatever the clean shutdown wrote (index files, stream
// states, Raft snapshots), so the next start recovers from the message
// blocks and logs alone. With sync_interval: always (nats/nats.conf)
// every acknowledged write is in the copy, as it is on the disk of a
// killed process. Restart starts it again.
func (s *Server) Crash() {
	s.tb.Helper()
	if s.Server == nil || !s.Server.Running() {
		return
	}
	store := s.Server.StoreDir()
	image := store + ".crash"
	if err := os.CopyFS(image, os.DirFS(store)); err != nil {
		s.tb.Fatalf("copy the store of %s: %v", s.Name(), err)
	}
	s.Stop()
	if err := os.RemoveAll(store); err != nil {
		s.tb.Fatal(err)
	}
	if err := os.Rename(image, store); err != nil {
		s.tb.Fatal(err)
	}
}

// MessageBlocks returns the paths of the message block files (*.blk) of
// stream in this server's JetStream store, for tests that damage them
// while the server is stopped.
func (s *Server) MessageBlocks(stream string) []string {
	s.tb.Helper()
	blocks, err := filepath.Glob(filepath.Join(s.storeDir, "jetstream", "*", "streams", stream, "msgs", "*.blk"))
	if err != nil || len(blocks) == 0 {
		s.tb.Fatalf("no message blocks of %s under %s (%v)", stream, s.storeDir, err)
	}
	return blocks
}

// KeyFile returns the path of the seed file of a deployment key, such as
// natskeys.KeyChatServer.
func (s *Server) KeyFile(name string) string {
	return filepath.Join(s.Dir, "keys", name+".nk")
}

// KeysDir returns the folder holding the deployment keys.
func (s *Server) KeysDir() string { return filepath.Join(s.Dir, "keys") }

// Connect connects as the service user whose seed is the deployment key
// name (natskeys.KeyChatServer, natskeys.KeyAdmin, ...) and closes the
// connection at the end of the test.
func (s *Server) Connect(name string, opts ...nats.Option) *nats.Conn {
	s.tb.Helper()
	opt, err := nats.NkeyOptionFromSeed(s.KeyFile(name))
	if err != nil {
		s.tb.Fatalf("nkey %s: %v", name, err)
	}
	nc, err := nats.Connect(s.ClientURL(), append([]nats.Option{opt, nats.Name("natstest-" + name)}, opts...)...)
	if err != nil {
		s.tb.Fatalf("connect as %s: %v", name, err)
	}
	s.tb.Cleanup(nc.Close)
	return nc
}
