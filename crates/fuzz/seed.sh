#!/usr/bin/env bash
# Seeds a scratch corpus directory for one fuzz target (libFuzzer adds to its corpus directory:
# never point it at testdata/ itself). Used by .ci/run's smoke and by long-run.sh.
# Usage: crates/fuzz/seed.sh TARGET DIR    (from the workspace root)
set -euo pipefail
target=$1
corpus=$2
mkdir -p "$corpus"
case "$target" in csr | finalize) cp testdata/csr/*.der "$corpus"/ ;; esac
if [ "$target" = est_body ]; then
    # The golden CSRs as EST clients send them: raw DER, base64 (64 columns CRLF, one line, 76
    # columns unpadded) and PEM with both armour labels.
    for der in testdata/csr/*.der; do
        seed="$corpus/$(basename "$der" .der)"
        cp "$der" "$seed.der"
        base64 -w 64 "$der" | sed 's/$/\r/' >"$seed.b64crlf"
        base64 -w 0 "$der" >"$seed.b64"
        base64 -w 76 "$der" | tr -d '=' >"$seed.b64nopad"
        { echo "-----BEGIN CERTIFICATE REQUEST-----"; base64 -w 64 "$der"; echo "-----END CERTIFICATE REQUEST-----"; } >"$seed.pem"
        sed 's/CERTIFICATE REQUEST/NEW CERTIFICATE REQUEST/' "$seed.pem" >"$seed.newpem"
    done
fi
case "$target" in scep_message | scep_envelope) cp testdata/scep/*.der "$corpus"/ ;; esac
if [ "$target" = est_path ]; then
    printf '/.well-known/est/cacerts' >"$corpus/unlabelled"
    printf '/.well-known/est/factory/simplereenroll' >"$corpus/labelled"
fi
