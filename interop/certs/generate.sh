#!/usr/bin/env bash
# Makes the interop crate's built-in test certificates (checked in; rerun only to replace
# them): a CA of our own and a server certificate it signs, valid for *.test.google.fr,
# foo.test.google.fr and localhost, the names interop clients check with
# --server_host_override. Keys are unencrypted on purpose: they protect nothing.
#
#   ca.pem          the CA certificate (what --use_test_ca trusts)
#   server1.pem     the server certificate
#   server1.key     its private key (PKCS#8)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
days=36500 # until 2125: tests must not start failing because a date passed
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
    -keyout "$tmp/ca.key" -out ca.pem \
    -subj "/O=grpcore/CN=grpcore interop test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"

openssl req -newkey rsa:2048 -nodes -sha256 \
    -keyout server1.key -out "$tmp/server1.csr" \
    -subj "/O=grpcore/CN=*.test.google.fr"

cat > "$tmp/ext.cnf" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:*.test.google.fr,DNS:foo.test.google.fr,DNS:localhost
EXT
openssl x509 -req -sha256 -days "$days" -in "$tmp/server1.csr" \
    -CA ca.pem -CAkey "$tmp/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -extfile "$tmp/ext.cnf" -out server1.pem

openssl verify -CAfile ca.pem server1.pem
