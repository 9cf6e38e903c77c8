// Command kez-sig-server stores kez sigchains: signed, append-only
// per-user logs, kept in the JetStream stream KEZ_SIGCHAINS.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"kez.lat/kez/sigserver"
	"kez.lat/kez/streams"
	"kez.lat/kez/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kez-sig-server: %v\n", err)
		os.Exit(1)
	}
}

type serveCmd struct {
	NATSURL           string        `name:"nats-url" env:"NATS_URL" default:"nats://127.0.0.1:4222" help:"NATS server the service connects to."`
	NATSNKeyFile      string        `name:"nats-nkey-file" env:"NATS_NKEY_FILE" type:"path" help:"Seed file of the service's NATS user (account KEZ), e.g. keys/sig-server.nk."`
	HTTPAddr          string        `name:"http-addr" env:"HTTP_ADDR" default:":7878" help:"Listen address of the HTTP API."`
	Replicas          int           `env:"REPLICAS" default:"1" help:"Replicas of the sigchain streams (1 on one server, 3 on a 3-node cluster)."`
	RequireRegistered bool          `name:"require-registered" env:"REQUIRE_REGISTERED" default:"true" negatable:"" help:"Accept events only for keys with a handle on the home server, read from its projection in the same NATS account (on by default; --no-require-registered or REQUIRE_REGISTERED=false accepts any key)."`
	MaxEvents         int           `name:"max-events" env:"MAX_EVENTS" default:"10000" help:"Most events one chain may hold (429 chain_full beyond)."`
	AppendLimit       int           `name:"append-limit" env:"APPEND_LIMIT" default:"60" help:"Events one chain may append per window, across all replicas (429 rate_limited beyond)."`
	AppendWindow      time.Duration `name:"append-window" env:"APPEND_WINDOW" default:"1h" help:"Window of the append rate limit."`
	CtimeSkew         time.Duration `name:"ctime-skew" env:"CTIME_SKEW" default:"10m" help:"How far ahead of the server clock an event's ctime may be."`
	TrustProxy        bool          `name:"trust-proxy" env:"TRUST_PROXY" help:"Take the client address (logged) from X-Forwarded-For (only behind a reverse proxy that sets it)."`
	LogFormat         string        `env:"LOG_FORMAT" enum:"json,text" default:"json" help:"Log format: json or text."`
	LogLevel          string        `env:"LOG_LEVEL" enum:"debug,info,warn,error" default:"info" help:"Minimum log level."`
}

func (c *serveCmd) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func (c *serveCmd) config() sigserver.Config {
	cfg := sigserver.DefaultConfig()
	cfg.NATSURL, cfg.NATSNKeyFile, cfg.HTTPAddr = c.NATSURL, c.NATSNKeyFile, c.HTTPAddr
	cfg.RequireRegistered, cfg.TrustProxy = c.RequireRegistered, c.TrustProxy
	cfg.MaxEvents, cfg.CtimeSkew = c.MaxEvents, c.CtimeSkew
	cfg.Streams = streams.SigchainConfig{Replicas: c.Replicas, AppendLimit: c.AppendLimit, AppendWindow: c.AppendWindow}
	return cfg
}

func (c *serveCmd) Run(ctx context.Context, e *env) error {
	logger := c.logger(e.stderr)
	srv, err := sigserver.Start(ctx, c.config(), logger)
	if err != nil {
		return err
	}
	<-ctx.Done()
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return srv.Close(sctx)
}

type healthcheckCmd struct {
	URL string `default:"http://127.0.0.1:7878/v1/healthz" env:"HEALTHCHECK_URL" help:"Health endpoint to query."`
}

func (c *healthcheckCmd) Run(ctx context.Context) error {
	return web.Healthcheck(ctx, c.URL)
}

type cli struct {
	Serve       serveCmd       `cmd:"" default:"withargs" help:"Run the sig-server (the default command)."`
	Healthcheck healthcheckCmd `cmd:"" help:"Exit 0 if the server's /v1/healthz answers 200 (for container health checks)."`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c cli
	exit := errors.New("exit")
	parser, err := newParser(&c, stdout, stderr, exit)
	if err != nil {
		return err
	}
	kctx, err := parseArgs(parser, args, exit)
	if err != nil || kctx == nil {
		return err
	}
	kctx.BindTo(ctx, (*context.Context)(nil))
	return kctx.Run(&env{stdout: stdout, stderr: stderr})
}

// newParser returns the command-line parser filling c; kong's exits
// (after --help) panic with exit.
func newParser(c *cli, stdout, stderr io.Writer, exit error) (*kong.Kong, error) {
	return kong.New(c,
		kong.Name("kez-sig-server"),
		kong.Description("kez-chat sigchain server: signed, append-only per-user logs on JetStream."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(int) { panic(exit) }),
		kong.UsageOnError(),
	)
}

// parseArgs parses args, turning kong's exit after --help into a nil
// context (nothing to run).
func parseArgs(p *kong.Kong, args []string, exit error) (kctx *kong.Context, err error) {
	defer func() {
		if r := recover(); r != nil {
			if r != exit {
				panic(r)
			}
			kctx, err = nil, nil
		}
	}()
	return p.Parse(args)
}

// env is what commands print to.
type env struct{ stdout, stderr io.Writer }
