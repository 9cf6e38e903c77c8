#!/usr/bin/env bash
# `make compose-test`: deploy/docker-compose.yml as an operator runs it, end
# to end, with the user's CLI. It brings the stack up from the images
# `make images` built (ours and the stand-in nats image), registers two
# users over HTTP with `kez-chat register`, checks both look-ups with curl,
# sends a message each way through NATS with `kez-chat send` and reads it
# with `kez-chat listen --once`, and tears the stack down (volumes
# included), also when a step fails or the script is interrupted.
#
# With COMPOSE_TEST_RELAY=1 (`make compose-test` sets it when cmd/kez-relay
# exists) the optional relay comes up too (compose profile `relay`),
# announced as the operator guide says: its address from `kez-relay id`
# into KEZ_PUBLIC_RELAYS; the relay must turn healthy and the home server
# list it in its records.
#
#   deploy/compose-test.sh                 # needs bin/kez-chat, the images, `docker compose` (v2)
#   KEZ_TAG=v2 deploy/compose-test.sh      # other image tags
#
# The published ports are free ones on 127.0.0.1, so it runs beside `make
# dev` or another stack; the project name is unique per run.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin}
KEZ_TAG=${KEZ_TAG:-dev}
DOMAIN=${DOMAIN:-kez.lat}
kez_chat=$BIN/kez-chat
[ -x "$kez_chat" ] || { echo "compose-test: $kez_chat missing (make build)" >&2; exit 1; }
docker compose version >/dev/null 2>&1 || { echo "compose-test: docker compose v2 is needed (make compose-install)" >&2; exit 1; }
for tool in curl jq timeout; do
	command -v $tool >/dev/null || { echo "compose-test: $tool is needed" >&2; exit 1; }
done

step() { printf 'compose-test: %s\n' "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Four consecutive ports nothing listens on (chat, sig, nats, relay),
# below the kernel's ephemeral range: a port in that range may be the
# local end of some connection (even one in TIME_WAIT, after a test run),
# which no connect attempt shows and docker's bind then refuses.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ephemeral=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$ephemeral" -gt 15100 ] || ephemeral=32768
base=
for _ in $(seq 50); do
	b=$((15000 + RANDOM % (ephemeral - 15010)))
	for p in $b $((b + 1)) $((b + 2)) $((b + 3)); do
		port_busy $p && continue 2
	done
	base=$b
	break
done
[ -n "$base" ] || { echo "compose-test: no free ports" >&2; exit 1; }

project=kez-compose-test-$$
files=(-f deploy/docker-compose.yml)
profiles=()
if [ "${COMPOSE_TEST_RELAY:-}" = 1 ]; then
	profiles=(--profile relay)
fi
export KEZ_TAG DOMAIN BIND=127.0.0.1 LOG_FORMAT=text \
	CHAT_PORTS=$base SIG_PORT=$((base + 1)) NATS_PORT=$((base + 2)) \
	RELAY_BIND=127.0.0.1 RELAY_PORT=$((base + 3)) \
	PUBLIC_URL=http://127.0.0.1:$base SIGCHAIN_URL=http://127.0.0.1:$((base + 1)) \
	PUBLIC_NATS_URL=nats://127.0.0.1:$((base + 2))
compose() { docker compose -p "$project" "${files[@]}" "${profiles[@]}" "$@"; }

work=$(mktemp -d)
started=$(now)
cold=
finish() {
	rc=$?
	trap - EXIT INT TERM
	if [ $rc -ne 0 ]; then
		step "FAILED (exit $rc); last logs:"
		compose logs --no-color --tail 40 >&2 || true
	fi
	step "tearing down"
	compose down -v --remove-orphans -t 10 >/dev/null 2>&1 || compose down -v --remove-orphans -t 10 >&2 || true
	rm -rf "$work"
	[ $rc -eq 0 ] && step "ok in $(since "$started") s (cold start to healthy ${cold}s)"
	exit $rc
}
trap finish EXIT
trap 'exit 130' INT TERM

relay_addr=
if [ ${#profiles[@]} -gt 0 ]; then
	# Creates the relay's key in its volume; the first line is the peer ID.
	out=$(compose --progress quiet run --rm --no-deps relay id --key-file /data/relay.key 2>"$work/relay-id.log") ||
		{ cat "$work/relay-id.log" >&2; exit 1; }
	relay_id=${out%%$'\n'*}
	case $relay_id in 12D3KooW*) ;; *) echo "compose-test: kez-relay id printed: $out" >&2; exit 1 ;; esac
	relay_addr=/ip4/127.0.0.1/tcp/$RELAY_PORT/p2p/$relay_id
	export KEZ_PUBLIC_RELAYS=$relay_addr
	step "relay $relay_addr"
fi

step "up: project $project, ports $base-$((base + 3)) on 127.0.0.1"
t=$(now)
compose up -d --wait --wait-timeout 120 >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; exit 1; }
cold=$(since "$t")
step "healthy after ${cold} s: $(compose ps --format '{{.Service}}' | sort | tr '\n' ' ')"

chat=http://127.0.0.1:$base
sig=http://127.0.0.1:$((base + 1))
curl -fsS "$chat/v1/healthz" >/dev/null
curl -fsS "$sig/v1/healthz" >/dev/null

# The user's CLI on this host against the published ports, one profile per
# person, keys in the profile (no OS keyring in CI); listen does not start
# the P2P node that serves shared files (it would listen on every interface).
# Each command gets a minute at most.
kc() {
	local who=$1
	shift
	KEZ_CHAT_NO_FILES=true timeout 60 "$kez_chat" --profile "$work/$who" --server "$chat" --domain "$DOMAIN" --key-store file "$@"
}

step "register alice and bob with kez-chat"
kc alice register alice --i-have-written-it-down >/dev/null
kc bob register bob --i-have-written-it-down >/dev/null
for who in alice bob; do
	key=$(kc "$who" --json whoami | jq -er .primary)
	got=$(curl -fsS "$chat/v1/u/$who" | jq -er .primary)
	[ "$got" = "$key" ] || { echo "compose-test: /v1/u/$who is bound to $got, want $key" >&2; exit 1; }
done

hello="hello bob, through compose $$"
step "alice sends, bob listens"
kc alice send @bob "$hello"
got=$(kc bob --json listen --once | jq -r 'select(.event == "message") | .body')
[ "$got" = "$hello" ] || { echo "compose-test: bob received \"$got\", want \"$hello\"" >&2; exit 1; }

step "bob answers, alice listens"
kc bob send @alice "hi alice"
got=$(kc alice --json listen --count 1 --timeout 20s | jq -r 'select(.event == "message") | .body')
[ "$got" = "hi alice" ] || { echo "compose-test: alice received \"$got\", want \"hi alice\"" >&2; exit 1; }

if [ -n "$relay_addr" ]; then
	# `up --wait` waited for the relay's health check; records name it
	# (unless this home server predates --public-relay).
	relays=$(curl -fsS "$chat/v1/u/alice" | jq -c '.relays')
	case $relays in
	null) step "note: the home server lists no relays in records (no --public-relay support)" ;;
	*"\"$relay_addr\""*) step "relay healthy and listed in records" ;;
	*) echo "compose-test: records list relays $relays, want $relay_addr" >&2; exit 1 ;;
	esac
fi
