// Package cli holds what the kez commands share: the signal-aware main,
// kong parsing with testable output and exits, and the NATS and logging
// flags of the servers.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
)

// Main runs run with a context cancelled on SIGINT or SIGTERM and exits 1
// with "name: error" on stderr if it fails.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Env is what commands print to; kong passes it to every Run method.
type Env struct{ Stdout, Stderr io.Writer }

var errExit = errors.New("exit")

// Run parses args into grammar (a kong command struct) and runs the chosen
// command's Run method, which may take a context.Context and an *Env.
// --help prints to stdout and returns nil.
func Run(ctx context.Context, grammar any, name, description string, args []string, stdout, stderr io.Writer) error {
	kctx, err := parse(grammar, name, description, args, stdout, stderr)
	if err != nil || kctx == nil {
		return err
	}
	kctx.BindTo(ctx, (*context.Context)(nil))
	return kctx.Run(&Env{Stdout: stdout, Stderr: stderr})
}

// Parse fills grammar from args and the environment without running
// anything (for tests of flag defaults).
func Parse(grammar any, args []string) error {
	_, err := parse(grammar, "test", "", args, io.Discard, io.Discard)
	return err
}

// parse turns kong's exit after --help into a nil context.
func parse(grammar any, name, description string, args []string, stdout, stderr io.Writer) (kctx *kong.Context, err error) {
	p, err := kong.New(grammar,
		kong.Name(name),
		kong.Description(description),
		kong.Writers(stdout, stderr),
		kong.Exit(func(int) { panic(errExit) }),
		kong.UsageOnError(),
	)
	if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			if r != errExit {
				panic(r)
			}
			kctx, err = nil, nil
		}
	}()
	return p.Parse(args)
}

// NATSFlags are the broker connection flags of a service.
type NATSFlags struct {
	NATSURL      string `name:"nats-url" env:"NATS_URL" default:"nats://127.0.0.1:4222" help:"NATS server the service connects to."`
	NATSNKeyFile string `name:"nats-nkey-file" env:"NATS_NKEY_FILE" type:"path" help:"Seed file of the service's NATS user (account KEZ), e.g. keys/chat-server.nk or keys/sig-server.nk."`
}

// LogFlags choose the log format and level.
type LogFlags struct {
	LogFormat string `env:"LOG_FORMAT" enum:"json,text" default:"json" help:"Log format: json or text."`
	LogLevel  string `env:"LOG_LEVEL" enum:"debug,info,warn,error" default:"info" help:"Minimum log level."`
}

// Logger returns the structured logger the flags describe, writing to w.
func (l LogFlags) Logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(l.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if l.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// ShutdownTimeout bounds a graceful shutdown.
const ShutdownTimeout = 20 * time.Second

// ServeUntilDone waits for ctx to end, then closes the server within
// ShutdownTimeout.
func ServeUntilDone(ctx context.Context, logger *slog.Logger, closeFn func(context.Context) error) error {
	<-ctx.Done()
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	return closeFn(sctx)
}

// EnvNames returns the environment variables the flags of cmd (a flags
// struct, or a pointer to one) read, those of embedded structs too: what
// a test of the defaults clears first.
func EnvNames(cmd any) []string {
	t := reflect.TypeOf(cmd)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for f := range t.Fields() {
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, EnvNames(reflect.Zero(f.Type).Interface())...)
		}
		if env := f.Tag.Get("env"); env != "" {
			out = append(out, env)
		}
	}
	return out
}
