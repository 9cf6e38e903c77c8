#!/usr/bin/env bash
# Installs Docker Compose v2 (`docker compose`) as a Docker CLI plugin, built
# from its Go module through the Go module proxy, for machines that have the
# Docker engine but no Compose v2 package (CI here, minimal servers).
#
#   deploy/install-compose.sh            # into ~/.docker/cli-plugins/
#   COMPOSE_VERSION=v2.40.3 PLUGIN_DIR=/usr/local/lib/docker/cli-plugins deploy/install-compose.sh
#
# Does nothing when the installed plugin already reports COMPOSE_VERSION.
# The first build takes about two minutes on 2 cores.
set -euo pipefail

COMPOSE_VERSION=${COMPOSE_VERSION:-v2.40.3}
PLUGIN_DIR=${PLUGIN_DIR:-$HOME/.docker/cli-plugins}
GO=${GO:-go}
plugin="$PLUGIN_DIR/docker-compose"

if [ -x "$plugin" ] && "$plugin" version --short 2>/dev/null | grep -qx "${COMPOSE_VERSION#v}"; then
	echo "docker compose ${COMPOSE_VERSION} already installed at $plugin" >&2
	exit 0
fi

dir=$("$GO" mod download -json "github.com/docker/compose/v2@${COMPOSE_VERSION}" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "install-compose: could not download github.com/docker/compose/v2@${COMPOSE_VERSION}" >&2; exit 1; }

# The module cache is read-only; build from a writable copy.
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -r "$dir/." "$work/"
chmod -R u+w "$work"

mkdir -p "$PLUGIN_DIR"
(
	cd "$work"
	CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off "$GO" build -trimpath \
		-ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=${COMPOSE_VERSION}" \
		-o "$plugin.tmp" ./cmd
)
mv "$plugin.tmp" "$plugin"
echo "installed $("$plugin" version) at $plugin" >&2
