// Package deploytest tests the deployment recipes of deploy/ in real
// containers: the compose stack (start, restart, kill -9 of nats-server,
// scaling), bring-your-own NATS, and the 3-node cluster losing a node under
// load. The tests are behind the `docker` build tag and need a Docker
// engine, Compose v2 and the images of `make images`; run them with
// `make test-docker`.
package deploytest
