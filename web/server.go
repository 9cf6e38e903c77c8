package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is an HTTP server with the timeouts every kez server uses.
type Server struct {
	http *http.Server
	ln   net.Listener
	wg   sync.WaitGroup
}

// Listen binds addr and serves handler in the background; errors other
// than a clean shutdown go to logger.
func Listen(addr string, handler http.Handler, logger *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	s := &Server{ln: ln, http: &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}}
	s.wg.Go(func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server", "err", err)
		}
	})
	return s, nil
}

// Addr returns the listen address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL returns http://<listen address>.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Shutdown stops accepting requests and waits (within ctx) for those in
// flight.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	s.wg.Wait()
	return err
}
