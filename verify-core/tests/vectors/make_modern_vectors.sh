#!/usr/bin/env bash
# Regenerates the ECDSA and Ed25519 known-answer vectors (modern.tsv) and
# their keys under verify-core/tests/vectors. make_vectors.sh runs it too.
# Signatures come from two independent implementations: the openssl CLI and
# Java's java.security.Signature (SignModern.java); the private keys are
# test-only. The invalid rows are made from valid ones here (tampered
# document and signature, another curve's signature, truncated and padded
# DER, raw r||s under a DER name and the reverse, wrong Ed25519 lengths);
# the high-S rows (n - s, valid in Java and OpenSSL) likewise.
#
#   bash verify-core/tests/vectors/make_modern_vectors.sh
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p private keys formats docs
rm -rf keys/ec* keys/ed25519* formats/ec256* formats/ed25519* unsupported modern.tsv fingerprints.tsv
mkdir -p unsupported
sig=$(mktemp)
trap 'rm -f "$sig"' EXIT

for curve in 256 384 521; do
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-$curve -out private/ec$curve.pem
  openssl pkcs8 -topk8 -nocrypt -in private/ec$curve.pem -outform DER -out private/ec$curve.pk8.der
done
openssl genpkey -algorithm ED25519 -out private/ed25519.pem
openssl pkcs8 -topk8 -nocrypt -in private/ed25519.pem -outform DER -out private/ed25519.pk8.der

# The registry: one format a key, each format used at least once.
openssl pkey -in private/ec256.pem -pubout -out keys/ec256.pem                               # SPKI PEM
openssl pkey -in private/ec384.pem -pubout -outform DER -out keys/ec384.der                  # SPKI DER
openssl req -new -x509 -key private/ec521.pem -subj /CN=ec521 -days 3650 -outform DER -out keys/ec521.crt
openssl pkey -in private/ed25519.pem -pubout -out keys/ed25519.pem
# Every format of the same keys, for the "same key, same fingerprint" test.
for k in ec256 ed25519; do
  openssl pkey -in private/$k.pem -pubout -out formats/$k-spki.pem
  openssl pkey -in private/$k.pem -pubout -outform DER -out formats/$k-spki.der
  openssl req -new -x509 -key private/$k.pem -subj /CN=$k -days 3650 -out formats/$k-cert.pem
  openssl x509 -in formats/$k-cert.pem -outform DER -out formats/$k-cert.der
done

# Each key's fingerprint as openssl computes it: SHA-256 of the SPKI DER.
for k in ec256 ec384 ec521 ed25519; do
  printf '%s\t%s\n' $k "$(openssl pkey -in private/$k.pem -pubout -outform DER | sha256sum | cut -d' ' -f1)" >> fingerprints.tsv
done
# Keys of families not served: loading them must fail, naming the reason.
openssl genpkey -algorithm ED448 | openssl pkey -pubout -out unsupported/ed448.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp256k1 | openssl pkey -pubout -out unsupported/secp256k1.pem
openssl genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:2048 -out "$sig"
openssl genpkey -paramfile "$sig" | openssl pkey -pubout -out unsupported/dsa.pem

# A document differing from text.txt in one byte (signatures of text.txt
# must not verify over it).
sed 's/quick/quack/' docs/text.txt > docs/tampered.txt
[ -f docs/big.bin ] ||
  python3 -c 'import sys; sys.stdout.buffer.write(bytes(i % 251 for i in range(1 << 20)))' > docs/big.bin

printf 'source\tkey\talgorithm\tdocument\tsignature\tvalid\n' > modern.tsv
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> modern.tsv; }

# openssl: ECDSA in DER (what `openssl dgst -sign` writes); the P1363 rows
# are the same signatures re-encoded (r and s read back by asn1parse).
der_to_p1363() { # der-file field-bytes -> hex r||s
  openssl asn1parse -inform DER -in "$1" | awk -F: '/INTEGER/ {print $NF}' |
    while read -r int; do printf "%0$(($2 * 2))s" "$int" | tr ' ' 0; done | tr A-F a-f
}
for curve in 256 384 521; do
  field=$(((curve + 7) / 8))
  for md in sha256 sha384 sha512; do
    up=$(echo $md | tr a-z A-Z)
    for doc in text.txt empty.bin big.bin; do
      openssl dgst -$md -sign private/ec$curve.pem -out "$sig" docs/$doc
      row openssl ec$curve "${up}withECDSA" $doc "$(xxd -p "$sig" | tr -d '\n')" true
      row openssl ec$curve "${up}withECDSAinP1363Format" $doc "$(der_to_p1363 "$sig" $field)" true
    done
  done
done
# (openssl 3.0's pkeyutl cannot sign an empty input: Java's rows cover it.)
for doc in text.txt big.bin; do
  openssl pkeyutl -sign -inkey private/ed25519.pem -rawin -in docs/$doc -out "$sig"
  row openssl ed25519 Ed25519 $doc "$(xxd -p "$sig" | tr -d '\n')" true
done

# Java: every algorithm, every key (and `EdDSA`, Java's other name).
for k in ec256 ec384 ec521 ed25519; do
  java SignModern.java private/$k.pk8.der $k docs >> modern.tsv
done

# Invalid and high-S rows, derived from the valid text.txt rows above.
python3 - <<'EOF'
import subprocess

def order(curve):  # the curve's group order n, as openssl prints it
    text = subprocess.run(["openssl", "ecparam", "-name", curve, "-param_enc", "explicit",
                           "-text", "-noout"], capture_output=True, check=True).stdout.decode()
    digits = text.split("Order:")[1].split("Cofactor")[0]
    return int("".join(c for c in digits if c in "0123456789abcdef"), 16)

ORDER = {"ec256": order("prime256v1"), "ec384": order("secp384r1"), "ec521": order("secp521r1")}
FIELD = {"ec256": 32, "ec384": 48, "ec521": 66}

def der_int(n):
    b = n.to_bytes((n.bit_length() + 8) // 8, "big")  # a leading 0 keeps it positive
    return b"\x02" + der_len(len(b)) + b

def der_len(n):
    return bytes([n]) if n < 128 else bytes([0x81, n])

def der_sig(r, s):
    body = der_int(r) + der_int(s)
    return b"\x30" + der_len(len(body)) + body

def parse_der(sig):
    out = subprocess.run(["openssl", "asn1parse", "-inform", "DER"], input=sig,
                         capture_output=True, check=True).stdout.decode()
    r, s = [int(l.rsplit(":", 1)[1], 16) for l in out.splitlines() if "INTEGER" in l]
    return r, s

rows = [l.rstrip("\n").split("\t") for l in open("modern.tsv")][1:]
out = []
def add(source, key, alg, doc, sig, valid):
    out.append("\t".join([source, key, alg, doc, sig.hex(), "true" if valid else "false"]))

for source, key, alg, doc, sig_hex, valid in rows:
    if doc != "text.txt" or valid != "true":
        continue
    sig = bytes.fromhex(sig_hex)
    tag = source + "-"
    add(tag + "tampered-document", key, alg, "tampered.txt", sig, False)
    flipped = bytearray(sig); flipped[len(sig) // 2] ^= 0x01
    add(tag + "tampered-signature", key, alg, doc, bytes(flipped), False)
    if alg.startswith("Ed") or alg == "EdDSA":
        add(tag + "63-bytes", key, alg, doc, sig[:-1], False)
        add(tag + "65-bytes", key, alg, doc, sig + b"\x00", False)
        add(tag + "empty", key, alg, doc, b"", False)
        continue
    field = FIELD[key]
    if alg.endswith("P1363Format"):
        r, s = int.from_bytes(sig[:field], "big"), int.from_bytes(sig[field:], "big")
        der_name = alg.replace("inP1363Format", "")
        add(tag + "raw-under-der-name", key, der_name, doc, sig, False)
        add(tag + "short-raw", key, alg, doc, sig[:-1], False)
        high = (ORDER[key] - s).to_bytes(field, "big")
        add(tag + "high-s", key, alg, doc, sig[:field] + high, True)
    else:
        r, s = parse_der(sig)
        add(tag + "der-under-raw-name", key, alg + "inP1363Format", doc, sig, False)
        add(tag + "truncated-der", key, alg, doc, sig[:-1], False)
        add(tag + "padded-der", key, alg, doc, sig + b"\x00", False)
        add(tag + "high-s", key, alg, doc, der_sig(r, ORDER[key] - s), True)
        # Another curve's signature, checked under this key.
        other = {"ec256": "ec384", "ec384": "ec256", "ec521": "ec256"}[key]
        theirs = next(x for x in rows if x[0] == source and x[1] == other
                      and x[2] == alg and x[3] == doc)
        add(tag + "other-curve", key, alg, doc, bytes.fromhex(theirs[4]), False)

with open("modern.tsv", "a") as f:
    f.write("\n".join(out) + "\n")
EOF
echo "wrote $(($(wc -l < modern.tsv) - 1)) modern vectors"
