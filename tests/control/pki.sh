#!/bin/sh
# A test CA and a server certificate signed by it, made with openssl (P-256, two days):
#   pki.sh DIR SUBJECT_ALT_NAMES    e.g.  pki.sh /tmp/x "IP:127.0.0.1,DNS:localhost"
# writes DIR/ca.pem, DIR/leaf.key and DIR/leaf.pem (the leaf, then the CA). Used by the https
# tests of net::client (src/net/client_tests.rs) and of the hooks (tests/hooks.rs).
set -eu
dir=$1
names=$2
cd "$dir"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
# shellcheck disable=SC2086
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=ringcast test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
# shellcheck disable=SC2086
openssl req $ec -keyout leaf.key -out leaf.csr -subj "/CN=localhost" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
    "$names" > leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.crt -days 2 \
    -extfile leaf.ext 2>/dev/null
cat leaf.crt ca.pem > leaf.pem
