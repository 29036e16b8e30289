#!/usr/bin/env bash
# The ACME benchmark of BENCHMARKS.md: certgate (durable sled store) and Pebble on this machine
# in one run, same load generator, C = 1, 8, 32 (override with CLIENTS="1,8"), DURATION seconds
# each (default 10).
#
#   certgate-always  certgate with danger_always_valid (what Pebble's PEBBLE_VA_ALWAYS_VALID does)
#   certgate-http01  certgate validating http-01 for real against the bench's responder
#   pebble           Pebble 2.4, validate-always, no nonce rejection, no authorization reuse
#
# Authorization reuse is off on every server, so each order validates afresh. The http-01 names
# (c<client>-0.bench.test) must resolve to 127.0.0.1: this script adds them to /etc/hosts (root).
# Usage: crates/bench/run-acme.sh [WORKDIR]     (run from the workspace root)
set -euo pipefail
cd "$(dirname "$0")/../.."

work=${1:-$(mktemp -d /tmp/certgate-bench.XXXXXX)}
clients=${CLIENTS:-1,8,32}
duration=${DURATION:-10}
mkdir -p "$work"
work=$(cd "$work" && pwd)

cargo build --release -q -p certgate -p certgate-bench
bench=target/release/certgate-bench

max_clients=$(tr ',' '\n' <<<"$clients" | sort -n | tail -1)
for i in $(seq 0 $((max_clients - 1))); do
    grep -q " c$i-0.bench.test" /etc/hosts || echo "127.0.0.1 c$i-0.bench.test" >>/etc/hosts
done

cat >"$work/certgate.toml" <<TOML
data_dir = "$work/certgate-data"
[log]
level = "warn"
[listeners]
https = "127.0.0.1:18443"
http = "127.0.0.1:18080"
[[issuers]]
name = "default"
create_if_missing = true
[[endpoints]]
protocol = "acme"
name = "always"
[endpoints.acme]
danger_always_valid = true
reuse_authorizations = false
[endpoints.acme.rate_limits]    # a load generator is one abusive client: limits off
new_accounts_per_ip = 0
new_orders_per_account = 0
pending_authorizations_per_account = 0
failed_validations_per_account = 0
failed_validations_per_identifier = 0
[[endpoints]]
protocol = "acme"
name = "http01"
[endpoints.acme]
reuse_authorizations = false
http01_port = 5012
[endpoints.acme.rate_limits]    # a load generator is one abusive client: limits off
new_accounts_per_ip = 0
new_orders_per_account = 0
pending_authorizations_per_account = 0
failed_validations_per_account = 0
failed_validations_per_identifier = 0
TOML
rm -rf "$work/certgate-data"
target/release/certgate serve --config "$work/certgate.toml" >"$work/certgate.log" 2>&1 &
certgate_pid=$!
pebble_pid=$(PEBBLE_HTTP_PORT=5022 crates/bench/pebble.sh "$work/pebble")
trap 'kill $certgate_pid $pebble_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    grep -q '^ready' "$work/certgate.log" && break
    sleep 0.1
done
root="$work/certgate-data/ca/default/root.pem"

run() { # label directory ca pid extra...
    local label=$1 directory=$2 ca=$3 pid=$4
    shift 4
    "$bench" acme --directory "$directory" --ca-cert "$ca" --clients "$clients" --duration "$duration" \
        --server-pid "$pid" --label "$label" --json "$work/$label.json" "$@"
}

echo "== $(date -u +%FT%TZ) $(nproc) cores; C=$clients, ${duration}s each"
run certgate-always https://127.0.0.1:18443/acme/always/directory "$root" "$certgate_pid"
run certgate-http01 https://127.0.0.1:18443/acme/http01/directory "$root" "$certgate_pid" \
    --challenge http-01 --http01-listen 127.0.0.1:5012
run pebble https://127.0.0.1:14000/dir "$work/pebble/ca.pem" "$pebble_pid"
echo "JSON: $work/*.json"
