#!/usr/bin/env bash
# Regenerates the known-answer vectors under verify-core/tests/vectors.
# Signatures come from two independent implementations: the openssl CLI and
# Java's java.security.Signature (Sign.java). The private keys are test-only.
#
#   bash verify-core/tests/vectors/make_vectors.sh
set -euo pipefail
cd "$(dirname "$0")"
rm -rf private keys formats docs vectors.tsv modern.tsv
mkdir -p private keys formats docs

for bits in 1024 2048 3072 4096; do
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:$bits -out private/k$bits.pem 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in private/k$bits.pem -outform DER -out private/k$bits.pk8.der
done
# A second 2048-bit key: signatures by it must not verify under k2048.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out private/other.pem 2>/dev/null

# The registry directory: one key a format, so loading exercises each.
openssl pkey -in private/k1024.pem -pubout -out keys/k1024.pem                       # SPKI PEM
openssl rsa -in private/k2048.pem -RSAPublicKey_out -out keys/k2048.pem 2>/dev/null   # PKCS#1 PEM
openssl pkey -in private/k3072.pem -pubout -outform DER -out keys/k3072.der           # SPKI DER
openssl req -new -x509 -key private/k4096.pem -subj /CN=k4096 -days 3650 -outform DER -out keys/k4096.crt
openssl pkey -in private/other.pem -pubout -out keys/other.pem

# Every format of the same key (k2048), for the "same key" test.
k=private/k2048.pem
openssl pkey -in $k -pubout -out formats/spki.pem
openssl pkey -in $k -pubout -outform DER -out formats/spki.der
openssl rsa -in $k -RSAPublicKey_out -out formats/pkcs1.pem 2>/dev/null
openssl rsa -in $k -RSAPublicKey_out -outform DER -out formats/pkcs1.der 2>/dev/null
openssl req -new -x509 -key $k -subj /CN=k2048 -days 3650 -out formats/cert.pem
openssl x509 -in formats/cert.pem -outform DER -out formats/cert.der
cp formats/cert.der formats/cert.crt
cp formats/cert.der formats/cert.cer

# Documents: text, empty, and 1 MiB (its pattern is rebuilt by the tests).
printf 'The quick brown fox jumps over the lazy dog.\nAssinatura digital.\n' > docs/text.txt
: > docs/empty.bin
python3 -c 'import sys; sys.stdout.buffer.write(bytes(i % 251 for i in range(1 << 20)))' > docs/big.bin

printf 'source\tkey\talgorithm\tdocument\tsignature\tvalid\n' > vectors.tsv
sign_openssl() { # key algorithm-name digest padding-opts... ; appends one row per document
  local key=$1 alg=$2 md=$3; shift 3
  for doc in text.txt empty.bin big.bin; do
    openssl dgst -$md -sign private/$key.pem "$@" -out /tmp/sig.$$ docs/$doc
    printf 'openssl\t%s\t%s\t%s\t%s\ttrue\n' $key "$alg" $doc "$(xxd -p /tmp/sig.$$ | tr -d '\n')" >> vectors.tsv
  done
}
for key in k1024 k2048 k3072 k4096; do
  for md in sha256 sha384 sha512; do
    up=$(echo $md | tr a-z A-Z)
    sign_openssl $key "${up}withRSA" $md
    # PSS with SHA-512 and a 64-byte salt does not fit in a 1024-bit modulus.
    [ "$key-$md" = k1024-sha512 ] && continue
    sign_openssl $key "${up}withRSA/PSS" $md -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest
  done
  sign_openssl $key SHA1withRSA sha1
  sign_openssl $key MD5withRSA md5
done

# Negative vectors: PSS with another salt length or another MGF1 hash.
for doc in text.txt; do
  openssl dgst -sha256 -sign private/k2048.pem -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:max -out /tmp/sig.$$ docs/$doc
  printf 'openssl-saltmax\tk2048\tSHA256withRSA/PSS\t%s\t%s\tfalse\n' $doc "$(xxd -p /tmp/sig.$$ | tr -d '\n')" >> vectors.tsv
  openssl dgst -sha256 -sign private/k2048.pem -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -sigopt rsa_mgf1_md:sha1 -out /tmp/sig.$$ docs/$doc
  printf 'openssl-mgf1sha1\tk2048\tSHA256withRSA/PSS\t%s\t%s\tfalse\n' $doc "$(xxd -p /tmp/sig.$$ | tr -d '\n')" >> vectors.tsv
done
rm -f /tmp/sig.$$

# Java's java.security.Signature, every algorithm, every key.
for key in k1024 k2048 k3072 k4096; do
  java Sign.java private/$key.pk8.der $key docs >> vectors.tsv
done
echo "wrote $(($(wc -l < vectors.tsv) - 1)) vectors"
# ECDSA and Ed25519: their own keys and modern.tsv.
bash make_modern_vectors.sh
