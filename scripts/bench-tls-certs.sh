#!/usr/bin/env bash
# Certificates for the TLS benchmark, ECDSA P-256 (the choice, and what a carrier deploys
# for cheap handshakes): a CA, a server certificate for `localhost` and 127.0.0.1 that every
# system under test shows, and one for the flooder's sink (the proxies connect to it by address).
#
#   scripts/bench-tls-certs.sh DIR    # writes DIR/ca.pem, DIR/server.{pem,key}, DIR/sink.{pem,key}
set -euo pipefail
dir=${1:?usage: bench-tls-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
command -v openssl >/dev/null || { echo "bench-tls-certs.sh: openssl is required" >&2; exit 1; }

ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ec ca.key
openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=sipshard bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.pem 2>/dev/null
for name in server sink; do
    ec "$name.key"
    openssl req -new -key "$name.key" -subj "/CN=localhost" -out "$name.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
        -sha256 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
done
