# A stand-in for the official nats image, for machines that reach no
# container registry (CI here): nats-server built from the version pinned in
# tools.mod (CGO_ENABLED=0, `make tools`), FROM scratch, with the official
# image's entrypoint and ports. `make images` tags it exactly as
# deploy/docker-compose.yml names the official image (nats:2.15.2), so the
# compose files run unchanged against either. Like the official image it runs
# as root; the compose files pass `--config /etc/nats/nats.conf` explicitly.
#
#   docker build -f deploy/nats.Dockerfile -t nats:2.15.2 bin/nats-image
FROM scratch
COPY nats-server /nats-server
EXPOSE 4222 6222 8222
ENTRYPOINT ["/nats-server"]
CMD ["--config", "/etc/nats/nats-server.conf"]
