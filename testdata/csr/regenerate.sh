#!/usr/bin/env bash
# Regenerates the golden PKCS#10 CSRs in this folder (see README.md).
#   bash testdata/csr/regenerate.sh
# Needs only the openssl CLI (tested with OpenSSL 3.0), coreutils and python3 (stdlib).
# Keys are throwaway: they live in a temp dir that is removed on exit. Every run makes
# new keys, so the files change byte-for-byte; what they test does not.
set -euo pipefail

OUT="$(CDPATH= cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# A minimal config so no system openssl.cnf (req defaults, prompts, extensions) leaks in.
CNF="$TMP/req.cnf"
cat >"$CNF" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
EOF
export OPENSSL_CONF="$CNF"

SUBJ="/CN=dev1.example.com"
SAN="subjectAltName=DNS:dev1.example.com,DNS:www.example.com,IP:192.0.2.10"

key() { # key NAME ALGORITHM [OPTIONS...]
    local name="$1"
    shift
    openssl genpkey -quiet -out "$TMP/$name.key" "$@"
}

csr() { # csr NAME KEYNAME SUBJECT [openssl req OPTIONS...]
    local name="$1" keyname="$2" subj="$3"
    shift 3
    openssl req -new -config "$CNF" -key "$TMP/$keyname.key" -subj "$subj" \
        -outform DER -out "$OUT/$name.der" "$@"
}

rm -f "$OUT"/*.der

key p256 -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve
key p384 -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -pkeyopt ec_param_enc:named_curve
key rsa2048 -algorithm RSA -pkeyopt rsa_keygen_bits:2048
key rsa3072 -algorithm RSA -pkeyopt rsa_keygen_bits:3072
key rsa4096 -algorithm RSA -pkeyopt rsa_keygen_bits:4096
key ed25519 -algorithm ED25519
key rsa1024 -algorithm RSA -pkeyopt rsa_keygen_bits:1024
key secp256k1 -algorithm EC -pkeyopt ec_paramgen_curve:secp256k1 -pkeyopt ec_param_enc:named_curve
key brainpool -algorithm EC -pkeyopt ec_paramgen_curve:brainpoolP256r1 -pkeyopt ec_param_enc:named_curve

# --- good: accepted and issued -------------------------------------------------------------
csr good_p256 p256 "$SUBJ" -addext "$SAN" -sha256
csr good_p384 p384 "$SUBJ" -addext "$SAN" -sha384
csr good_rsa2048 rsa2048 "$SUBJ" -addext "$SAN" -sha256
csr good_rsa3072 rsa3072 "$SUBJ" -addext "$SAN" -sha256
csr good_rsa4096 rsa4096 "$SUBJ" -addext "$SAN" -sha256
csr good_ed25519 ed25519 "$SUBJ" -addext "$SAN" # Ed25519 takes no digest option
csr good_cn_only_p256 p256 "/CN=host.example.com" -sha256

# Extra requested extensions certgate must ignore (not copy), plus a challengePassword
# attribute. 1.3.6.1.4.1.311.20.2 is Microsoft's certificate template name extension.
cat >"$TMP/extra.cnf" <<'EOF'
[req]
distinguished_name = dn
attributes = attrs
req_extensions = ext
prompt = no
[dn]
CN = dev1.example.com
[attrs]
challengePassword = s3cret
[ext]
subjectAltName = DNS:dev1.example.com,DNS:www.example.com,IP:192.0.2.10
basicConstraints = CA:FALSE
1.3.6.1.4.1.311.20.2 = ASN1:UTF8String:Machine
EOF
openssl req -new -config "$TMP/extra.cnf" -key "$TMP/p256.key" -sha256 \
    -outform DER -out "$OUT/good_extra_extensions_p256.der"

# --- bad: well-formed but refused by policy ------------------------------------------------
csr bad_rsa1024 rsa1024 "$SUBJ" -addext "$SAN" -sha256
csr bad_secp256k1 secp256k1 "$SUBJ" -addext "$SAN" -sha256
csr bad_brainpool brainpool "$SUBJ" -addext "$SAN" -sha256
csr bad_outside_policy_p256 p256 "$SUBJ" -addext "subjectAltName=DNS:evil.example.net" -sha256
csr bad_wildcard_p256 p256 "$SUBJ" -addext "subjectAltName=DNS:*.example.com" -sha256
MANY="subjectAltName=$(for i in $(seq 0 100); do printf 'DNS:host%d.example.com,' "$i"; done)"
csr bad_too_many_sans_p256 p256 "$SUBJ" -addext "${MANY%,}" -sha256
# SHA-1: OpenSSL 3.0 at the default security level still *creates* SHA-1 signatures with
# `req -sha1` (seclevel limits only verification in TLS); nothing special was needed.
csr bad_sha1_rsa2048 rsa2048 "$SUBJ" -addext "$SAN" -sha1

# --- bad: signature does not verify (well-formed DER) --------------------------------------
# Flip "dev1" -> "dew1" in the subject CN (the first occurrence of the text is the subject,
# inside CertificationRequestInfo); lengths are unchanged so the DER stays valid.
python3 - "$OUT/good_p256.der" "$OUT/bad_signature_p256.der" <<'EOF'
import sys
data = open(sys.argv[1], "rb").read()
i = data.find(b"dev1.example.com")
assert i > 0, "CN text not found"
bad = data[:i] + b"dew1" + data[i + 4:]
assert len(bad) == len(data)
open(sys.argv[2], "wb").write(bad)
EOF

# --- bad: not a CSR ------------------------------------------------------------------------
size=$(stat -c %s "$OUT/good_p256.der")
head -c $((size / 2)) "$OUT/good_p256.der" >"$OUT/bad_truncated.der"
head -c 64 /dev/urandom >"$OUT/bad_garbage.der"

# --- self-checks ---------------------------------------------------------------------------
# Captured into a variable, not piped into `grep -q`, so an early grep exit cannot SIGPIPE
# openssl and trip pipefail.
verify() {
    local out
    out="$(openssl req -inform DER -in "$1" -verify -noout 2>&1 || true)"
    [[ "$out" == *"verify OK"* ]]
}
for f in "$OUT"/good_*.der "$OUT"/bad_rsa1024.der "$OUT"/bad_secp256k1.der \
    "$OUT"/bad_brainpool.der "$OUT"/bad_outside_policy_p256.der "$OUT"/bad_wildcard_p256.der \
    "$OUT"/bad_too_many_sans_p256.der "$OUT"/bad_sha1_rsa2048.der; do
    if ! verify "$f"; then
        echo "self-check failed: $f does not verify" >&2
        exit 1
    fi
done
if verify "$OUT/bad_signature_p256.der"; then
    echo "self-check failed: bad_signature_p256.der still verifies" >&2
    exit 1
fi
openssl req -inform DER -in "$OUT/bad_signature_p256.der" -noout -text >/dev/null
for f in bad_truncated bad_garbage; do
    if openssl req -inform DER -in "$OUT/$f.der" -noout 2>/dev/null; then
        echo "self-check failed: $f.der parses" >&2
        exit 1
    fi
done
echo "regenerated $(ls "$OUT"/*.der | wc -l) CSRs in $OUT"
