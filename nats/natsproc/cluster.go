package natsproc

import (
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Options configure the nats-server nodes Start runs.
type Options struct {
	// Bin is the nats-server binary.
	Bin string
	// Conf is the reference configuration (nats/nats.conf); its store
	// folder "/data/jetstream" is replaced by each node's own.
	Conf []byte
	// Dir receives each node's configuration and log. nats.conf includes
	// keys/kez-keys.conf relative to itself: the caller writes
	// Dir/keys/kez-keys.conf.
	Dir string
	// StoreDir is the parent of the nodes' stores (default Dir).
	StoreDir string
	// Nodes is the number of nodes (default 1); more than one are joined
	// in a cluster named kez.
	Nodes int
	// Adjust, if set, edits each node's configuration (the store's
	// limits, for example).
	Adjust func(conf string) string
	// NoFile, if positive, is the nodes' soft fd limit.
	NoFile int
	// Profile opens each node's Go profiling port (nats-server
	// --profile, net/http/pprof on 127.0.0.1): Node.ProfileURL.
	Profile bool
}

// Node is one nats-server process.
type Node struct {
	*Proc
	ClientURL  string // nats://127.0.0.1:port
	MonitorURL string // http://127.0.0.1:port
	ProfileURL string // http://127.0.0.1:port with Options.Profile, else ""
	StoreDir   string // its JetStream store
}

// Cluster is the nodes Start runs.
type Cluster struct {
	Nodes []*Node
}

// Start runs o.Nodes nats-server processes and waits until each answers
// its health check. On an error it kills the nodes it started.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if o.Nodes <= 0 {
		o.Nodes = 1
	}
	if o.StoreDir == "" {
		o.StoreDir = o.Dir
	}
	if _, err := os.Stat(o.Bin); err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	per := 3 // client, monitoring, route
	if o.Profile {
		per = 4
	}
	ports, err := FreePorts(per * o.Nodes)
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	defer func() {
		if err != nil {
			c.Kill()
		}
	}()
	var routes []string
	for i := range o.Nodes {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[per*i+2]))
	}
	for i := range o.Nodes {
		name := fmt.Sprintf("n%d", i+1)
		store := filepath.Join(o.StoreDir, "store-"+name)
		conf := strings.Replace(string(o.Conf), `"/data/jetstream"`, strconv.Quote(store), 1)
		if o.Adjust != nil {
			conf = o.Adjust(conf)
		}
		// Monitoring on loopback, whatever the configuration says:
		// /connz lists every user's key, address and subscriptions, and
		// nats-server has no flag for the monitoring host (-a does not
		// set it). A key repeated at the end replaces the earlier one.
		conf += fmt.Sprintf("\n# natsproc\nhttp: \"127.0.0.1:%d\"\n", ports[per*i+1])
		path := filepath.Join(o.Dir, "nats-"+name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return nil, err
		}
		args := []string{"--config", path, "--name", name, "-a", "127.0.0.1",
			"-p", strconv.Itoa(ports[per*i])}
		if o.Nodes > 1 {
			args = append(args, "--cluster_name", "kez", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
		}
		n := &Node{
			Proc:       &Proc{Name: "nats-server " + name, Path: o.Bin, Args: args, Log: filepath.Join(o.Dir, name+".log"), NoFile: o.NoFile},
			ClientURL:  fmt.Sprintf("nats://127.0.0.1:%d", ports[per*i]),
			MonitorURL: fmt.Sprintf("http://127.0.0.1:%d", ports[per*i+1]),
			StoreDir:   store,
		}
		if o.Profile {
			// nats-server listens for profiles on its -a address.
			n.Proc.Args = append(n.Proc.Args, "--profile", strconv.Itoa(ports[per*i+3]))
			n.ProfileURL = fmt.Sprintf("http://127.0.0.1:%d", ports[per*i+3])
		}
		if err := n.Start(); err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := WaitHTTP(ctx, n.MonitorURL+"/healthz", 60*time.Second); err != nil {
			return nil, fmt.Errorf("%s: %w (log: %s)", n.Name, err, n.Log)
		}
	}
	return c, nil
}

// ClientURLs returns the nodes' client URLs.
func (c *Cluster) ClientURLs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.ClientURL)
	}
	return out
}

// Kill kills every node (kill -9).
func (c *Cluster) Kill() {
	for _, n := range c.Nodes {
		n.Kill()
	}
}

// WaitHTTP asks url until it answers 200, for up to d, and otherwise
// returns an error with the last answer.
func WaitHTTP(ctx context.Context, url string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	hc := &http.Client{Timeout: 3 * time.Second}
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else if ctx.Err() == nil || last == "" {
			// A request cut by the bound keeps the answer before it.
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not 200 within %v: %s", url, d, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FreePorts returns n consecutive free ports below the kernel's
// ephemeral range (32768 up), where the many short-lived connections of
// other work on the machine cannot take them between this check and the
// bind.
func FreePorts(n int) ([]int, error) {
	for try := 0; try < 50; try++ {
		base := 15000 + mrand.IntN(32768-15000-n)
		var out []int
		for p := base; p < base+n; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", p))
			if err != nil {
				break
			}
			l.Close()
			out = append(out, p)
		}
		if len(out) == n {
			return out, nil
		}
	}
	return nil, fmt.Errorf("no range of %d free ports", n)
}
