#!/usr/bin/env bash
# Creates a private certificate authority and one certificate per node for Akka.Remote TLS with
# mutual authentication (disttrain train/worker --tls-cert NODE.pfx --tls-ca ca.crt).
#
#   deploy/make-certs.sh [--out DIR] [--days N] NODE [NODE ...]
#
# NODE is a name (it becomes the certificate's CN and a DNS name) optionally followed by
# =IP[,IP...] for IP addresses to list as well, e.g. coordinator=10.0.0.1 worker-1=10.0.0.2.
# Writes DIR/ca.crt (give it to every node), DIR/ca.key (keep it off the nodes), and for each
# node DIR/NODE.pfx (its certificate and private key; copy it to that node only).
# The .pfx files are protected with the password in DISTTRAIN_TLS_PASSWORD (empty if unset);
# nodes read the same variable. An existing CA in DIR is reused, so nodes can be added later.
set -euo pipefail

out=certs days=825 nodes=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "make-certs.sh: unknown option $1 (expected --out DIR, --days N)" >&2; exit 2 ;;
    *) nodes+=("$1"); shift ;;
  esac
done
if [[ ${#nodes[@]} -eq 0 ]]; then
  echo "make-certs.sh: name at least one node, e.g. deploy/make-certs.sh coordinator worker-1 worker-2" >&2
  exit 2
fi
for spec in "${nodes[@]}"; do
  name=${spec%%=*}
  [[ "$name" =~ ^[A-Za-z0-9.-]+$ ]] || { echo "make-certs.sh: node name '$name': use letters, digits, dots and dashes" >&2; exit 2; }
done
command -v openssl >/dev/null || { echo "make-certs.sh: openssl not found (apt-get install openssl)" >&2; exit 2; }

mkdir -p "$out"
umask 077
password=${DISTTRAIN_TLS_PASSWORD:-}

if [[ ! -f "$out/ca.key" ]]; then
  openssl req -x509 -new -newkey rsa:3072 -nodes -sha256 -days "$days" \
    -subj "/CN=DistTrain CA" -keyout "$out/ca.key" -out "$out/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  echo "make-certs: created the CA $out/ca.crt"
else
  echo "make-certs: reusing the CA in $out"
fi

for spec in "${nodes[@]}"; do
  name=${spec%%=*}
  san="DNS:$name,DNS:localhost,IP:127.0.0.1"
  if [[ "$spec" == *=* ]]; then
    IFS=, read -ra ips <<<"${spec#*=}"
    for ip in "${ips[@]}"; do san+=",IP:$ip"; done
  fi
  tmp=$(mktemp -d)
  openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$tmp/key.pem" -out "$tmp/req.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$san" >"$tmp/ext.cnf"
  openssl x509 -req -in "$tmp/req.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial -days "$days" -sha256 \
    -extfile "$tmp/ext.cnf" -out "$tmp/cert.pem" 2>/dev/null
  openssl pkcs12 -export -inkey "$tmp/key.pem" -in "$tmp/cert.pem" -name "$name" -out "$out/$name.pfx" -passout "pass:$password"
  rm -rf "$tmp"
  echo "make-certs: $out/$name.pfx ($san)"
done
