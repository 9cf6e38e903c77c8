// Command kez-chat-server is the kez-chat home server: the handle registry,
// its HTTP API and WebFinger, all state in JetStream.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez/chatserver"
	"kez.lat/kez/cmd/cli"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/streams"
	"kez.lat/kez/web"
)

func main() { cli.Main("kez-chat-server", run) }

type serveCmd struct {
	cli.NATSFlags
	cli.LogFlags
	HTTPAddr        string        `name:"http-addr" env:"HTTP_ADDR" default:":8080" help:"Listen address of the HTTP API."`
	Domain          string        `env:"DOMAIN" default:"kez.lat" help:"Home domain: handles are <name>@<domain>."`
	PublicURL       string        `name:"public-url" env:"PUBLIC_URL" help:"Public base URL of this server (default https://<domain>)."`
	SigchainURL     string        `name:"sigchain-url" env:"SIGCHAIN_URL" default:"http://127.0.0.1:7878" help:"Public base URL of kez-sig-server, linked from every handle record."`
	PublicNATSURL   string        `name:"public-nats-url" env:"PUBLIC_NATS_URL" default:"nats://127.0.0.1:4222" help:"NATS URL handed to clients in handle records."`
	Replicas        int           `env:"REPLICAS" default:"1" help:"Replicas of every stream and bucket (1 on one server, 3 on a 3-node cluster)."`
	ReservedFile    string        `name:"reserved-file" env:"RESERVED_FILE" type:"path" help:"File of extra reserved handles, one per line (# comments)."`
	RegisterLimit   int           `name:"register-limit" env:"REGISTER_LIMIT" default:"10" help:"Registration attempts allowed per client address per window, across all replicas."`
	RegisterLimit48 int           `name:"register-limit-48" env:"REGISTER_LIMIT_48" default:"0" help:"Registration attempts allowed per IPv6 /48 per window, across all replicas (0: ten times --register-limit). IPv4 has no wider limit than the address."`
	RegisterWindow  time.Duration `name:"register-window" env:"REGISTER_WINDOW" default:"1h" help:"Window of the registration rate limit."`
	TrustProxy      bool          `name:"trust-proxy" env:"TRUST_PROXY" help:"Take the client address from X-Forwarded-For (only behind a reverse proxy that sets it)."`
	Freshness       time.Duration `env:"REGISTER_FRESHNESS" default:"5m" help:"How far a registration's signed timestamp may be from the server clock."`

	KeysDir           string        `name:"keys-dir" env:"KEYS_DIR" type:"path" help:"Folder written by 'kez-chat-server keys': fills in any of the four seed files below that is not set."`
	CalloutNKeyFile   string        `name:"callout-nkey-file" env:"CALLOUT_NKEY_FILE" type:"path" help:"Seed file of the callout responder's NATS user (account AUTH), e.g. keys/callout.nk."`
	CalloutIssuerFile string        `name:"callout-issuer-file" env:"CALLOUT_ISSUER_FILE" type:"path" help:"Seed file of auth_callout.issuer (signs user JWTs). Without it the auth callout is off."`
	CalloutXKeyFile   string        `name:"callout-xkey-file" env:"CALLOUT_XKEY_FILE" type:"path" help:"Seed file of auth_callout.xkey (callout requests are sealed to it)."`
	UsersAccount      string        `name:"users-account" env:"USERS_ACCOUNT" default:"USERS" help:"NATS account users are placed in."`
	UserJWTTTL        time.Duration `name:"user-jwt-ttl" env:"USER_JWT_TTL" default:"1h" help:"Lifetime of a user's NATS authorisation; clients reconnect and re-authorise at expiry."`
	MaxConnsPerKey    int           `name:"max-conns-per-key" env:"MAX_CONNS_PER_KEY" default:"8" help:"Connections one key may have open at once, across replicas and broker nodes (listen, a chat window and a few sends); 0: no cap."`
	InboxMaxAge       time.Duration `name:"inbox-max-age" env:"INBOX_MAX_AGE" default:"720h" help:"How long an unread message waits in an inbox."`
	InboxMaxMsgs      int64         `name:"inbox-max-msgs" env:"INBOX_MAX_MSGS" default:"1000" help:"Unread messages one sender may hold in one inbox (its share): a stranger's flood never blocks a contact's message."`
	SenderMaxMsgs     int64         `name:"sender-max-msgs" env:"SENDER_MAX_MSGS" default:"10000" help:"Unread messages one sender may hold across all inboxes together."`
	InboxMaxMsgSize   int32         `name:"inbox-max-msg-size" env:"INBOX_MAX_MSG_SIZE" default:"65536" help:"Largest message in bytes (also each user's NATS payload limit)."`
	InboxMaxBytes     int64         `name:"inbox-max-bytes" env:"INBOX_MAX_BYTES" default:"10737418240" help:"Bytes all inboxes together may hold (10 GiB by default)."`
	PublicRelays      []string      `name:"public-relay" env:"KEZ_PUBLIC_RELAYS" help:"Multiaddr of a kez-relay, ending in /p2p/<peer id> (as 'kez-relay id' prints it), advertised in handle records (repeatable; env: comma-separated)."`

	CheckpointFile    string        `name:"checkpoint-file" env:"CHECKPOINT_FILE" type:"path" help:"File on this replica's own disk keeping its checkpoint of the registry log (one per replica; recommended: the broker's disk can lose the copy in the KV)."`
	IntegrityInterval time.Duration `name:"integrity-interval" env:"INTEGRITY_INTERVAL" default:"1m" help:"How often the append-only streams are checked for damage (also at start and on every leader change)."`
	ScrubRate         int           `name:"scrub-rate" env:"SCRUB_RATE" default:"2000" help:"Events per second the background scrub of the registry log reads at most."`
	ScrubInterval     time.Duration `name:"scrub-interval" env:"SCRUB_INTERVAL" default:"1h" help:"Time between background scrubs of the registry log (one also starts when a stream's leader changes; while damage is held, a failed one is tried again within 30 s)."`
}

// seedFiles fills in unset seed files from the keys folder.
func (c *serveCmd) seedFiles() {
	if c.KeysDir == "" {
		return
	}
	for _, f := range []struct {
		path *string
		name string
	}{
		{&c.NATSNKeyFile, natskeys.KeyChatServer},
		{&c.CalloutNKeyFile, natskeys.KeyCallout},
		{&c.CalloutIssuerFile, natskeys.KeyIssuer},
		{&c.CalloutXKeyFile, natskeys.KeyXKey},
	} {
		if *f.path == "" {
			*f.path = filepath.Join(c.KeysDir, f.name+".nk")
		}
	}
}

func (c *serveCmd) Run(ctx context.Context, e *cli.Env) error {
	logger := c.Logger(e.Stderr)
	srv, err := chatserver.Start(ctx, c.config(), logger)
	if err != nil {
		return startHint(err)
	}
	return cli.ServeUntilDone(ctx, logger, srv.Close)
}

// config is the server's configuration from the flags, whose defaults
// are chatserver.DefaultConfig's (TestFlagDefaults).
func (c *serveCmd) config() chatserver.Config {
	cfg := chatserver.DefaultConfig()
	cfg.NATSURL, cfg.NATSNKeyFile = c.NATSURL, c.NATSNKeyFile
	cfg.HTTPAddr, cfg.Domain = c.HTTPAddr, strings.ToLower(c.Domain)
	cfg.PublicURL = c.PublicURL
	if cfg.PublicURL == "" {
		cfg.PublicURL = "https://" + cfg.Domain
	}
	cfg.SigchainURL, cfg.PublicNATS = c.SigchainURL, c.PublicNATSURL
	cfg.ReservedFile, cfg.TrustProxy, cfg.Freshness = c.ReservedFile, c.TrustProxy, c.Freshness
	cfg.Streams = streams.Config{
		Replicas: c.Replicas, RegisterLimit: c.RegisterLimit, RegisterNetLimit: c.RegisterLimit48, RegisterWindow: c.RegisterWindow,
		InboxMaxAge: c.InboxMaxAge, InboxMaxMsgs: c.InboxMaxMsgs, InboxMaxMsgSize: c.InboxMaxMsgSize,
		InboxMaxBytes: c.InboxMaxBytes, SenderMaxMsgs: c.SenderMaxMsgs,
	}
	cfg.PublicRelays = c.PublicRelays
	cfg.CheckpointFile, cfg.IntegrityInterval = c.CheckpointFile, c.IntegrityInterval
	cfg.ScrubRate, cfg.ScrubInterval = c.ScrubRate, c.ScrubInterval
	c.seedFiles()
	cfg.NATSNKeyFile = c.NATSNKeyFile
	cfg.CalloutNKeyFile, cfg.CalloutIssuerFile, cfg.CalloutXKeyFile = c.CalloutNKeyFile, c.CalloutIssuerFile, c.CalloutXKeyFile
	cfg.UsersAccount, cfg.UserJWTTTL, cfg.MaxConnsPerKey = c.UsersAccount, c.UserJWTTTL, c.MaxConnsPerKey
	return cfg
}

// startHint adds what to change to an error of Start that a setting
// explains.
func startHint(err error) error {
	var tooSmall *streams.StoreTooSmallError
	if errors.As(err, &tooSmall) {
		return fmt.Errorf("%w\nhint: lower --inbox-max-bytes (INBOX_MAX_BYTES) to less than %d, leaving room for the sig-server's streams, or give nats-server a larger store (jetstream max_file_store, or a larger volume)", err, tooSmall.Free)
	}
	return err
}

type rebuildCmd struct {
	cli.NATSFlags
	cli.LogFlags
	Replicas int  `env:"REPLICAS" default:"1" help:"Replicas of the rebuilt buckets."`
	Check    bool `help:"Rebuild into scratch buckets and compare them with the live projection instead of replacing it."`
}

// connectJS connects a one-shot command (rebuild, scrub) to JetStream as
// the service user; close the connection when done.
func connectJS(f cli.NATSFlags, name string, logger *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := streams.Connect(f.NATSURL, f.NATSNKeyFile, "kez-chat-server "+name, logger)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func (c *rebuildCmd) Run(ctx context.Context, e *cli.Env) error {
	logger := c.Logger(e.Stderr)
	nc, js, err := connectJS(c.NATSFlags, "rebuild", logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	res, err := chatserver.Rebuild(ctx, js, c.Replicas, c.Check, logger)
	if err != nil {
		return err
	}
	return json.NewEncoder(e.Stdout).Encode(res)
}

type scrubCmd struct {
	cli.NATSFlags
	cli.LogFlags
	Domain string `env:"DOMAIN" default:"kez.lat" help:"Home domain: names the registry log in its tree head (<domain>/registry)."`
	JSON   bool   `name:"json" help:"Print the result as JSON (stable: fields are added, never changed)."`
}

// errDamaged makes scrub exit non-zero after printing what it found.
var errDamaged = errors.New("damage found: see docs/operations.md, \"A damaged log\"")

func (c *scrubCmd) Run(ctx context.Context, e *cli.Env) error {
	logger := c.Logger(e.Stderr)
	nc, js, err := connectJS(c.NATSFlags, "scrub", logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	res, err := chatserver.Scrub(ctx, js, chatserver.ScrubOptions{Domain: strings.ToLower(c.Domain)})
	if err != nil {
		return err
	}
	if c.JSON {
		if err := json.NewEncoder(e.Stdout).Encode(res); err != nil {
			return err
		}
	} else {
		printScrub(e.Stdout, res)
	}
	if !res.OK {
		return errDamaged
	}
	return nil
}

// printScrub writes res for a person: one line per stream, its problems
// below it, and the registry's tree head.
func printScrub(w io.Writer, res chatserver.ScrubResult) {
	var head string
	for _, s := range res.Streams {
		leader := s.Leader
		if leader == "" {
			leader = "-"
		}
		fmt.Fprintf(w, "%-16s leader %-8s %-8s %d messages, sequences %d to %d\n", s.Stream, leader, s.Status, s.Msgs, s.FirstSeq, s.LastSeq)
		for _, p := range s.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
		if s.More > 0 {
			fmt.Fprintf(w, "  - and %d more\n", s.More)
		}
		for _, n := range s.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		if s.MoreNotes > 0 {
			fmt.Fprintf(w, "  note: and %d more\n", s.MoreNotes)
		}
		if s.TreeHead != "" {
			head = s.TreeHead
		}
	}
	if head != "" {
		fmt.Fprintf(w, "\nregistry tree head (C2SP checkpoint body):\n%s", head)
	}
}

type keysCmd struct {
	Dir           string `default:"keys" type:"path" help:"Folder for every seed (<name>.nk, mode 0600; the operator's admin and sys too) and kez-keys.conf."`
	ChatServerDir string `name:"chat-server-dir" type:"path" help:"Also copy kez-chat-server's seeds (issuer, xkey, chat-server, callout) into this folder of its own."`
	SigServerDir  string `name:"sig-server-dir" type:"path" help:"Also copy kez-sig-server's seed (sig-server) into this folder of its own."`
	NATSDir       string `name:"nats-dir" type:"path" help:"Also write kez-keys.conf (public keys only: all nats-server needs) into this folder."`
}

func (c *keysCmd) Run(e *cli.Env) error {
	stdout := e.Stdout
	conf, err := natskeys.EnsureKeys(c.Dir)
	if err != nil {
		return err
	}
	// Each service's own folder gets only the seeds it uses (copies that
	// are never overwritten), so that none can read another's.
	for _, d := range []struct {
		dir  string
		keys []string
	}{{c.ChatServerDir, natskeys.ChatServerKeys}, {c.SigServerDir, natskeys.SigServerKeys}} {
		if d.dir != "" {
			if err := natskeys.Install(c.Dir, d.dir, d.keys...); err != nil {
				return err
			}
		}
	}
	if c.NATSDir != "" {
		if err := natskeys.WriteConf(c.NATSDir, conf); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "# %s/%s (included by nats/nats.conf); existing seeds were kept.\n", c.Dir, natskeys.KeysConfFile)
	_, err = stdout.Write(conf)
	return err
}

type healthcheckCmd struct {
	URL  string        `default:"http://127.0.0.1:8080/v1/readyz" env:"HEALTHCHECK_URL" help:"Readiness endpoint to query."`
	Wait time.Duration `default:"0s" help:"Keep asking, once a second, until it answers 200 or this long has passed."`
	Live bool          `help:"Ask the liveness endpoint beside --url instead (livez: the process serves HTTP; systemd ExecStartPost)."`
}

func (c *healthcheckCmd) Run(ctx context.Context) error {
	return web.Healthcheck(ctx, c.URL, c.Live, c.Wait)
}

type command struct {
	Serve       serveCmd       `cmd:"" default:"withargs" help:"Run the home server (the default command)."`
	Rebuild     rebuildCmd     `cmd:"" help:"Replay the registry stream into an empty projection (stop the servers first), or --check it."`
	Scrub       scrubCmd       `cmd:"" help:"Check every append-only stream end to end (gaps, the registry's hash tree, the projection, the sigchains) and name each stream's leader; exits 1 on damage."`
	Keys        keysCmd        `cmd:"" help:"Generate the NATS callout issuer, xkey and service nkeys (never overwrites), copy each server's into its own folder, and print the config values."`
	Healthcheck healthcheckCmd `cmd:"" help:"Exit 0 if the server's /v1/readyz answers 200: it is ready (for container health checks); with --live, its livez."`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cli.Run(ctx, &command{}, "kez-chat-server",
		"kez-chat home server: handle registry, HTTP API, WebFinger and NATS auth callout on JetStream.", args, stdout, stderr)
}
