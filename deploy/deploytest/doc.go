// Package deploytest tests the deployment recipes of deploy/ in real
// containers: the compose stack (start, restart, kill -9 of nats-server,
// scaling, which seeds each container can read, the broker's monitoring
// kept inside its container), bring-your-own NATS, and the 3-node cluster
// losing a node under load. Those tests are behind the `docker` build tag
// and need a Docker engine, Compose v2 and the images of `make images`
// (KEZ_TAG picks their tag); run them with `make test-docker`. The systemd
// files are checked without Docker, in `make test`.
package deploytest
