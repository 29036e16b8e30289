#!/usr/bin/env bash
# Starts Pebble as a benchmark peer and prints its PID.
#
# Usage: pebble.sh WORKDIR
# Writes WORKDIR/pebble.json, an API certificate (WORKDIR/cert.pem, key.pem) under a small
# root WORKDIR/ca.pem (trust it with --ca-cert WORKDIR/ca.pem, or use --insecure) and logs to
# WORKDIR/pebble.log. Validation always succeeds (PEBBLE_VA_ALWAYS_VALID=1; clients must still POST the challenge), no random
# badNonce, no authorization reuse. Ports: PEBBLE_LISTEN (127.0.0.1:14000),
# PEBBLE_MGMT (127.0.0.1:15000), PEBBLE_HTTP_PORT (5002), PEBBLE_TLS_PORT (5001).
# With PEBBLE_EAB_KID and PEBBLE_EAB_HMAC (base64url MAC key) set, external account binding is
# required with that one key. Directory: https://$PEBBLE_LISTEN/dir. Stop it with: kill PID
set -euo pipefail

dir=${1:?usage: pebble.sh WORKDIR}
listen=${PEBBLE_LISTEN:-127.0.0.1:14000}
mgmt=${PEBBLE_MGMT:-127.0.0.1:15000}
http_port=${PEBBLE_HTTP_PORT:-5002}
tls_port=${PEBBLE_TLS_PORT:-5001}
pebble_bin=${PEBBLE_BIN:-pebble}
eab_kid=${PEBBLE_EAB_KID:-}
eab_hmac=${PEBBLE_EAB_HMAC:-}

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# A small root (ca.pem) and the API certificate it signs: rustls/webpki refuse a self-signed
# CA certificate as a server's end-entity certificate, so trust ca.pem, not cert.pem.
if [[ ! -s $dir/ca.pem || ! -s $dir/cert.pem || ! -s $dir/key.pem ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 30 -subj "/CN=certgate-bench Pebble API root" \
        >/dev/null 2>&1
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$dir/key.pem" -out "$dir/api.csr" -subj /CN=localhost >/dev/null 2>&1
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' \
        >"$dir/api.ext"
    openssl x509 -req -in "$dir/api.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 30 -extfile "$dir/api.ext" -out "$dir/cert.pem" >/dev/null 2>&1
fi

if [[ -n $eab_kid ]]; then
    eab=$(printf '"externalAccountBindingRequired": true,\n    "externalAccountMACKeys": {"%s": "%s"}' \
        "$eab_kid" "$eab_hmac")
else
    eab='"externalAccountBindingRequired": false'
fi

cat >"$dir/pebble.json" <<JSON
{
  "pebble": {
    "listenAddress": "$listen",
    "managementListenAddress": "$mgmt",
    "certificate": "$dir/cert.pem",
    "privateKey": "$dir/key.pem",
    "httpPort": $http_port,
    "tlsPort": $tls_port,
    "ocspResponderURL": "",
    $eab
  }
}
JSON

PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
    nohup "$pebble_bin" -config "$dir/pebble.json" >"$dir/pebble.log" 2>&1 </dev/null &
pid=$!

for _ in $(seq 1 100); do
    if curl -sf --cacert "$dir/ca.pem" "https://$listen/dir" >/dev/null 2>&1; then
        echo "$pid"
        exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "pebble exited; see $dir/pebble.log" >&2
        tail -n 20 "$dir/pebble.log" >&2 || true
        exit 1
    fi
    sleep 0.1
done
echo "pebble did not answer at https://$listen/dir within 10 s; see $dir/pebble.log" >&2
kill "$pid" 2>/dev/null || true
exit 1
