#!/usr/bin/env bash
# Test certificates for the local services' secured modes (kafka.sh, postgres.sh), with openssl.
#
#   deploy/local/tls.sh DIR NAME
#
# Makes DIR/ca.pem + DIR/ca.key (a throwaway CA, once per DIR: services given the same DIR
# trust one CA) and DIR/NAME.pem + DIR/NAME.key, a server certificate for 127.0.0.1 and
# localhost signed by that CA, valid for 30 days. Clients verify with DIR/ca.pem. Prints
# nothing on stdout. For tests and development only: the CA key lies next to its certificate.
set -euo pipefail

DIR="${1:?usage: tls.sh DIR NAME}"
NAME="${2:?usage: tls.sh DIR NAME}"
DAYS=30

say() { echo "tls.sh: $*" >&2; }

mkdir -p "$DIR"
# Two services started side by side share the CA: one of them makes it.
exec 8>"$DIR/.lock"
flock 8
if [[ ! -s "$DIR/ca.pem" || ! -s "$DIR/ca.key" ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$DAYS" \
        -keyout "$DIR/ca.key" -out "$DIR/ca.pem" -subj "/CN=roomserver local test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null ||
        { say "ERROR: openssl could not make the CA in $DIR"; exit 1; }
    chmod 600 "$DIR/ca.key"
    chmod 644 "$DIR/ca.pem"
fi
openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$DIR/$NAME.key" -out "$DIR/$NAME.csr" \
    -subj "/CN=localhost" 2>/dev/null
cat >"$DIR/$NAME.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EOF
openssl x509 -req -sha256 -days "$DAYS" -in "$DIR/$NAME.csr" -CA "$DIR/ca.pem" \
    -CAkey "$DIR/ca.key" -CAcreateserial -CAserial "$DIR/ca.srl" \
    -extfile "$DIR/$NAME.ext" -out "$DIR/$NAME.pem" 2>/dev/null ||
    { say "ERROR: openssl could not sign the $NAME certificate"; exit 1; }
rm -f "$DIR/$NAME.csr" "$DIR/$NAME.ext"
chmod 600 "$DIR/$NAME.key"
exec 8>&-
