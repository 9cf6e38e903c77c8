// Package natsproc runs nats-server, and the kez servers beside it, as
// child processes: one node or a cluster from the reference nats.conf,
// joined by flags as deploy/cluster/docker-compose.yml joins them. The
// load generator (cmd/kez-load) and the fault runs (chaos) share it.
package natsproc
