#!/usr/bin/env bash
# `make dev`: the whole kez-chat stack on one machine without Docker.
# nats-server runs nats/nats.conf (keys generated into .dev/keys on first
# run and kept), then kez-chat-server, kez-sig-server and kez-relay. Ctrl-C
# stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=.dev
NATS_PORT=${NATS_PORT:-4222}
NATS_MONITOR_PORT=${NATS_MONITOR_PORT:-8222}
CHAT_ADDR=${CHAT_ADDR:-127.0.0.1:8080}
SIG_ADDR=${SIG_ADDR:-127.0.0.1:7878}
RELAY_PORT=${RELAY_PORT:-4001}
RELAY_HTTP=${RELAY_HTTP:-127.0.0.1:7879}
DOMAIN=${DOMAIN:-kez.lat}

mkdir -p "$DEV"
bin/kez-chat-server keys --dir "$DEV/keys" >/dev/null
# The reference config, with its store moved into .dev/ (nats-server refuses
# a store_dir flag that duplicates the file's) and monitoring on loopback
# said explicitly: /connz lists every user's key, address and subscriptions,
# and nats-server has no flag for the monitoring host (-a does not set it).
sed "s#\"/data/jetstream\"#\"$PWD/$DEV/jetstream\"#" nats/nats.conf > "$DEV/nats.conf"
printf '\n# make dev\nhttp: "127.0.0.1:%s"\n' "$NATS_MONITOR_PORT" >> "$DEV/nats.conf"

pids=()
cleanup() {
	trap - EXIT INT TERM
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

bin/nats-server -c "$DEV/nats.conf" -a 127.0.0.1 -p "$NATS_PORT" &
pids+=($!)
for i in $(seq 1 100); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; then break; fi
	[ "$i" = 100 ] && { echo "dev: nats-server did not start" >&2; exit 1; }
	sleep 0.1
done

export NATS_URL="nats://127.0.0.1:$NATS_PORT" PUBLIC_NATS_URL="nats://127.0.0.1:$NATS_PORT"
export DOMAIN LOG_FORMAT=${LOG_FORMAT:-text}
export SIGCHAIN_URL="http://$SIG_ADDR"

# The relay's key (created on first run) fixes its address, which the home
# server advertises to clients for file transfers.
RELAY_LISTEN="/ip4/127.0.0.1/tcp/$RELAY_PORT,/ip4/127.0.0.1/udp/$RELAY_PORT/quic-v1"
export KEZ_PUBLIC_RELAYS
KEZ_PUBLIC_RELAYS=$(bin/kez-relay id --key-file "$DEV/relay.key" --listen "${RELAY_LISTEN%%,*}" | sed -n 2p)

KEYS_DIR="$DEV/keys" HTTP_ADDR="$CHAT_ADDR" PUBLIC_URL="http://$CHAT_ADDR" \
	bin/kez-chat-server serve &
pids+=($!)

if [ -x bin/kez-sig-server ]; then
	NATS_NKEY_FILE="$DEV/keys/sig-server.nk" HTTP_ADDR="$SIG_ADDR" bin/kez-sig-server serve &
	pids+=($!)
fi

KEZ_RELAY_LISTEN="$RELAY_LISTEN" bin/kez-relay serve --key-file "$DEV/relay.key" \
	--home-server "http://$CHAT_ADDR" --http "$RELAY_HTTP" >/dev/null &
pids+=($!)

cat >&2 <<MSG

kez-chat dev stack:
  home server   http://$CHAT_ADDR   (try: curl http://$CHAT_ADDR/v1/healthz)
  sig-server    http://$SIG_ADDR
  relay         $KEZ_PUBLIC_RELAYS   (metrics http://$RELAY_HTTP/metrics)
  NATS          nats://127.0.0.1:$NATS_PORT  (monitoring http://127.0.0.1:$NATS_MONITOR_PORT)
  nats CLI      bin/nats --server nats://127.0.0.1:$NATS_PORT --nkey $DEV/keys/admin.nk stream ls
Ctrl-C stops everything; state stays in $DEV/ (make clean removes it).

MSG
wait -n "${pids[@]}"
