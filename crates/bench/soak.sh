#!/usr/bin/env bash
# The soak of BENCHMARKS.md: mixed issuance against one certgate for SOAK_MINUTES (default 30)
# while the daemon's RSS and the database size on disk are sampled every minute.
#
#   ACME   certgate-bench, 2 clients in 20-second runs with 10-second pauses, paced at
#          SOAK_ACME_RATE orders/s (default 50; 0 = unpaced), validate-always,
#          certificates valid 2 minutes (newOrder notAfter), authorizations reused, orders
#          expiring after 60 s
#   EST    curl simpleenroll in a loop (a 2-minute profile), HTTP Basic
#   revocations, CRL downloads and OCSP queries every few seconds, expiry scans every 30 s
#
# Retention is short (everything finished is swept 60 s after it expires, and the audit log
# keeps its newest 5000 entries in the database, the rest in segment files under data/audit),
# so a bounded store shows as a flat curve: the database holds a few minutes of certificates,
# not the whole run. The audit segments grow by design; their size is sampled too.
# Usage: crates/bench/soak.sh [WORKDIR]    (run from the workspace root)
set -euo pipefail
cd "$(dirname "$0")/../.."

work=${1:-$(mktemp -d /tmp/certgate-soak.XXXXXX)}
minutes=${SOAK_MINUTES:-30}
# ACME orders per second while a load run lasts (0: as fast as the machine goes, which
# saturates both cores and starves sled's space reclamation; see BENCHMARKS.md).
rate=${SOAK_ACME_RATE:-50}
pace=()
[ "$rate" != 0 ] && pace=(--rate "$rate")
mkdir -p "$work"
work=$(cd "$work" && pwd)

cargo build --release -q -p certgate -p certgate-bench
certgate=$PWD/target/release/certgate
bench=$PWD/target/release/certgate-bench

cat >"$work/certgate.toml" <<TOML
data_dir = "$work/data"
[log]
level = "warn"
[listeners]
https = "127.0.0.1:19443"
http = "127.0.0.1:19080"
[[issuers]]
name = "default"
create_if_missing = true
[[profiles]]
name = "short-device"
usage = "device"
default_validity_minutes = 2
max_validity_minutes = 10
[[endpoints]]
protocol = "acme"
name = "soak"
[endpoints.acme]
danger_always_valid = true
order_lifetime_seconds = 60
[endpoints.acme.rate_limits]    # a load generator is one abusive client: limits off
new_accounts_per_ip = 0
new_orders_per_account = 0
pending_authorizations_per_account = 0
failed_validations_per_account = 0
failed_validations_per_identifier = 0
[[endpoints]]
protocol = "est"
name = "default"
profiles = ["short-device"]
owner_labels = { owner = "soak" }
[lifecycle]
scan_interval_seconds = 30
[lifecycle.deployment]
interval_seconds = 0
[retention]
sweep_interval_seconds = 30
acme_seconds_after_expiry = 60
certificate_seconds_after_expiry = 60
approval_seconds = 60
delivery_days = 1
audit_entries_in_store = 5000
TOML
rm -rf "$work/data"
"$certgate" serve --config "$work/certgate.toml" >"$work/certgate.log" 2>&1 &
pid=$!
pids=()
trap 'kill $pid "${pids[@]}" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    grep -q '^ready' "$work/certgate.log" && break
    sleep 0.1
done
grep -q '^ready' "$work/certgate.log" || { cat "$work/certgate.log"; exit 1; }
root="$work/data/ca/default/root.pem"
issuer="$work/data/ca/default/issuer.pem"
cli() { "$certgate" "$@" --config "$work/certgate.toml"; }
echo wonderland | cli est user add --endpoint default alice >/dev/null

# EST: one CSR, enrolled over and over (each answer is a new certificate).
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/est.key" \
    -subj "/CN=soak-device" -outform DER -out "$work/est.csr" 2>/dev/null
base64 -w 64 "$work/est.csr" >"$work/est.b64"
(
    while true; do
        curl -sS --cacert "$root" -u alice:wonderland -H 'Content-Type: application/pkcs10' \
            --data-binary @"$work/est.b64" -o "$work/est.p7" \
            https://127.0.0.1:19443/.well-known/est/simpleenroll || true
        sleep 0.05
    done
) >/dev/null 2>&1 &
pids+=($!)

# Revocations (the newest EST certificate), CRL downloads and OCSP queries.
(
    while true; do
        sleep 5
        serial=$(base64 -d "$work/est.p7" 2>/dev/null | openssl pkcs7 -inform DER -print_certs 2>/dev/null |
            openssl x509 -noout -serial 2>/dev/null | cut -d= -f2) || true
        [ -n "${serial:-}" ] && cli cert revoke "$serial" --reason keyCompromise >/dev/null 2>&1 || true
        curl -sS -o /dev/null http://127.0.0.1:19080/crl/default.crl || true
        [ -n "${serial:-}" ] && openssl ocsp -issuer "$issuer" -CAfile "$root" -url http://127.0.0.1:19080/ocsp/default \
            -serial "0x$serial" >/dev/null 2>&1 || true
    done
) >/dev/null 2>&1 &
pids+=($!)

# ACME: the load generator in 20-second runs with 10-second pauses (load and quiet, as a
# real fleet's renewals come), new accounts each run, for the whole soak.
(
    end=$((SECONDS + minutes * 60))
    run=0
    while [ $SECONDS -lt $end ]; do
        run=$((run + 1))
        "$bench" acme --directory https://127.0.0.1:19443/acme/soak/directory --ca-cert "$root" \
            --clients 2 --duration 20 --challenge dns-01 --validity-seconds 120 ${pace[@]+"${pace[@]}"} \
            --threads 1 --label "soak-$run" >>"$work/bench.txt" 2>>"$work/bench.err" || true
        sleep 10
    done
) &
bench_pid=$!
pids+=($bench_pid)

echo "minute,rss_kib,db_bytes,certificates,audit_archive_bytes,shed_requests,db_live_bytes" | tee "$work/soak.csv"
sample() {
    local rss db certs archive shed live metrics
    rss=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status)
    db=$(du -sb "$work/data/db" | cut -f1)
    archive=$(du -sb "$work/data/audit" 2>/dev/null | cut -f1)
    certs=$(curl -sS --unix-socket "$work/data/admin.sock" http://admin/v1/status | tr -d ' \n' |
        sed -n 's/.*"certificates":\([0-9]*\).*/\1/p')
    # Requests turned away while the store caught up ([store] shed_above_*), all protocols.
    # The live data is measured only once the file is over [store] shed_above_mib (0 before).
    metrics=$(curl -sS http://127.0.0.1:19080/metrics)
    shed=$(awk '/^certgate_issuance_total\{.*result="shed"\}/ {n += $2} END {print n + 0}' <<<"$metrics")
    live=$(awk '/^certgate_store_bytes\{kind="live"\}/ {print $2}' <<<"$metrics")
    echo "$1,$rss,$db,$certs,${archive:-0},$shed,${live:-0}" | tee -a "$work/soak.csv"
}
sample 0
for minute in $(seq 1 "$minutes"); do
    sleep 60
    sample "$minute"
done
kill "${pids[@]}" 2>/dev/null || true
grep -h "soak-" "$work/bench.txt" | tail -3 || true
echo "soak figures: $work/soak.csv"
