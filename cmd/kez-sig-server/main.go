// Command kez-sig-server stores kez sigchains: signed, append-only
// per-user logs, kept in the JetStream stream KEZ_SIGCHAINS.
package main

import (
	"context"
	"io"
	"time"

	"kez.lat/kez/cmd/cli"
	"kez.lat/kez/sigserver"
	"kez.lat/kez/streams"
	"kez.lat/kez/web"
)

func main() { cli.Main("kez-sig-server", run) }

type serveCmd struct {
	cli.NATSFlags
	cli.LogFlags
	HTTPAddr          string        `name:"http-addr" env:"HTTP_ADDR" default:":7878" help:"Listen address of the HTTP API."`
	Replicas          int           `env:"REPLICAS" default:"1" help:"Replicas of the sigchain streams (1 on one server, 3 on a 3-node cluster)."`
	RequireRegistered bool          `name:"require-registered" env:"REQUIRE_REGISTERED" default:"true" negatable:"" help:"Accept events only for keys with a handle on the home server, read from its projection in the same NATS account (on by default; --no-require-registered or REQUIRE_REGISTERED=false accepts any key)."`
	MaxEvents         int           `name:"max-events" env:"MAX_EVENTS" default:"10000" help:"Most events one chain may hold (429 chain_full beyond)."`
	AppendLimit       int           `name:"append-limit" env:"APPEND_LIMIT" default:"60" help:"Events one chain may append per window, across all replicas (429 rate_limited beyond)."`
	AppendWindow      time.Duration `name:"append-window" env:"APPEND_WINDOW" default:"1h" help:"Window of the append rate limit."`
	CtimeSkew         time.Duration `name:"ctime-skew" env:"CTIME_SKEW" default:"10m" help:"How far ahead of the server clock an event's ctime may be."`
	TrustProxy        bool          `name:"trust-proxy" env:"TRUST_PROXY" help:"Take the client address (logged) from X-Forwarded-For (only behind a reverse proxy that sets it)."`
}

func (c *serveCmd) config() sigserver.Config {
	cfg := sigserver.DefaultConfig()
	cfg.NATSURL, cfg.NATSNKeyFile, cfg.HTTPAddr = c.NATSURL, c.NATSNKeyFile, c.HTTPAddr
	cfg.RequireRegistered, cfg.TrustProxy = c.RequireRegistered, c.TrustProxy
	cfg.MaxEvents, cfg.CtimeSkew = c.MaxEvents, c.CtimeSkew
	cfg.Streams = streams.SigchainConfig{Replicas: c.Replicas, AppendLimit: c.AppendLimit, AppendWindow: c.AppendWindow}
	return cfg
}

func (c *serveCmd) Run(ctx context.Context, e *cli.Env) error {
	logger := c.Logger(e.Stderr)
	srv, err := sigserver.Start(ctx, c.config(), logger)
	if err != nil {
		return err
	}
	return cli.ServeUntilDone(ctx, logger, srv.Close)
}

type healthcheckCmd struct {
	URL  string        `default:"http://127.0.0.1:7878/v1/readyz" env:"HEALTHCHECK_URL" help:"Readiness endpoint to query."`
	Wait time.Duration `default:"0s" help:"Keep asking, once a second, until it answers 200 or this long has passed."`
	Live bool          `help:"Ask the liveness endpoint beside --url instead (livez: the process serves HTTP; systemd ExecStartPost)."`
}

func (c *healthcheckCmd) Run(ctx context.Context) error {
	return web.Healthcheck(ctx, c.URL, c.Live, c.Wait)
}

type command struct {
	Serve       serveCmd       `cmd:"" default:"withargs" help:"Run the sig-server (the default command)."`
	Healthcheck healthcheckCmd `cmd:"" help:"Exit 0 if the server's /v1/readyz answers 200: it is ready (for container health checks); with --live, its livez."`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cli.Run(ctx, &command{}, "kez-sig-server",
		"kez-chat sigchain server: signed, append-only per-user logs on JetStream.", args, stdout, stderr)
}
