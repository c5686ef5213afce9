#!/usr/bin/env python3
"""Keys, JWKS and tokens for the peer benchmark, and the tokens of its accept/reject checks.

  fixtures.py DIR [--count 1000]

Writes, with the `cryptography` package only (the JWS bytes are assembled here, so every forged
token is exactly what its case says):
  DIR/keys/{rs256,es256}.key, .pub.pem   the signing keys (RSA-2048, P-256) and their public PEMs
  DIR/keys/{rs256,es256}-other.key       a second key of each kind (the "wrong key" case)
  DIR/keys/jwks.json                     RFC 7517 set: kid "rs-1" (RS256), "es-1" (ES256), use sig
  DIR/tokens/{rs256,es256}.token         one valid token
  DIR/tokens/{rs256,es256}.tokens        --count distinct valid tokens, one a line (rotating runs)
  DIR/tokens/cases.tsv                   alg, case, token file, expected status of a correct
                                         validator, expected status of the HAProxy peer (CASES)
Valid tokens: header alg, typ, kid; claims iss, aud, sub, client_id, scope, jti, iat, nbf, exp
(exp = now + --ttl).
"""
import argparse
import base64
import json
import os
import time
import uuid

from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "https://issuer.bench.local"
AUDIENCE = "gateway-bench"
KID = {"RS256": "rs-1", "ES256": "es-1"}

# name: (what a correct validator answers, what the HAProxy peer answers, how the token differs).
# "2xx" / "401" / "4xx" are checked; "-" is recorded, not checked (the HAProxy peer checks alg,
# iss, aud, exp and the signature, as its config says, and nothing else).
CASES = {
    "valid": ("2xx", "200", "a valid token"),
    "no-token": ("401", "401", "no Authorization header"),
    "garbage": ("4xx", "401", "'not.a.jwt'"),
    "tampered-payload": ("401", "401", "sub changed to admin, signature kept"),
    "tampered-signature": ("401", "401", "one bit of the signature flipped"),
    "expired": ("401", "401", "exp two hours ago"),
    "not-yet-valid": ("401", "-", "nbf in one hour (the peer does not check nbf)"),
    "missing-exp": ("401", "401", "no exp claim"),
    "wrong-aud": ("401", "401", "aud of another service"),
    "wrong-iss": ("401", "401", "another issuer"),
    "wrong-key": ("401", "401", "signed by another key of the same kind, the real kid"),
    "unknown-kid": ("401", "-", "a kid the JWKS does not have (the peer has one key, no kids)"),
    "alg-none": ("401", "401", "alg none, empty signature"),
    "hs256-public-key": ("401", "401", "HS256 with the public key's PEM as the HMAC secret"),
    "other-alg": ("-", "401", "a valid token of the other algorithm (the peer takes one alg)"),
    "es256-der-signature": ("401", "401", "ES256 signature in DER instead of r||s (ES256 only)"),
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signature(alg, key, signing_input, der=False):
    if alg == "RS256":
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    if alg == "ES256":
        sig = key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        if der:
            return sig
        r, s = decode_dss_signature(sig)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "HS256":
        mac = hmac.HMAC(key, hashes.SHA256())
        mac.update(signing_input)
        return mac.finalize()
    return b""  # none


def jws(alg, key, claims, kid, der=False):
    def part(obj):
        return b64url(json.dumps(obj, separators=(",", ":")).encode())
    signing_input = part({"alg": alg, "typ": "JWT", "kid": kid}) + "." + part(claims)
    return signing_input + "." + b64url(signature(alg, key, signing_input.encode(), der))


def claims(n, now, ttl, **changes):
    out = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"user-{n:05d}", "client_id": "bench-client",
           "scope": "read:items write:items", "jti": str(uuid.uuid4()), "iat": now, "nbf": now - 60,
           "exp": now + ttl}
    for name, value in changes.items():
        if value is None:
            out.pop(name)
        else:
            out[name] = value
    return out


def public_jwk(alg, key):
    numbers = key.public_key().public_numbers()
    if alg == "RS256":
        return {"kty": "RSA", "kid": KID[alg], "alg": alg, "use": "sig",
                "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))}
    return {"kty": "EC", "kid": KID[alg], "alg": alg, "use": "sig", "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))}


def new_key(alg):
    return rsa.generate_private_key(65537, 2048) if alg == "RS256" else ec.generate_private_key(ec.SECP256R1())


def write_keys(folder):
    os.makedirs(folder, exist_ok=True)
    keys = {}
    for alg in KID:
        for suffix in ("", "-other"):
            key = new_key(alg)
            base = os.path.join(folder, alg.lower() + suffix)
            with open(os.open(base + ".key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
            with open(base + ".pub.pem", "wb") as f:
                f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
            keys[alg + suffix] = key
    with open(os.path.join(folder, "jwks.json"), "w") as f:
        json.dump({"keys": [public_jwk(alg, keys[alg]) for alg in KID]}, f, indent=2)
    return keys


def case_tokens(alg, keys, now, ttl, folder):
    """{case: token} for one algorithm; the HMAC secret of the confusion case is the PEM file's bytes."""
    key, other = keys[alg], keys[alg + "-other"]
    kid = KID[alg]
    valid = jws(alg, key, claims(0, now, ttl), kid)
    header, payload, sig = valid.split(".")
    forged_payload = dict(json.loads(b64url_decode(payload)), sub="admin")
    flipped = bytearray(b64url_decode(sig))
    flipped[len(flipped) // 2] ^= 1
    with open(os.path.join(folder, alg.lower() + ".pub.pem"), "rb") as f:
        public_pem = f.read()
    other_alg = "ES256" if alg == "RS256" else "RS256"
    tokens = {
        "valid": valid,
        "no-token": "",
        "garbage": "not.a.jwt",
        "tampered-payload": f"{header}.{b64url(json.dumps(forged_payload, separators=(',', ':')).encode())}.{sig}",
        "tampered-signature": f"{header}.{payload}.{b64url(bytes(flipped))}",
        "expired": jws(alg, key, claims(0, now - 7200, 3600), kid),
        "not-yet-valid": jws(alg, key, claims(0, now, ttl, nbf=now + 3600), kid),
        "missing-exp": jws(alg, key, claims(0, now, ttl, exp=None), kid),
        "wrong-aud": jws(alg, key, claims(0, now, ttl, aud="another-service"), kid),
        "wrong-iss": jws(alg, key, claims(0, now, ttl, iss="https://evil.example"), kid),
        "wrong-key": jws(alg, other, claims(0, now, ttl), kid),
        "unknown-kid": jws(alg, key, claims(0, now, ttl), kid + "-unknown"),
        "alg-none": jws("none", None, claims(0, now, ttl), kid),
        "hs256-public-key": jws("HS256", public_pem, claims(0, now, ttl), kid),
        "other-alg": jws(other_alg, keys[other_alg], claims(0, now, ttl), KID[other_alg]),
    }
    if alg == "ES256":
        tokens["es256-der-signature"] = jws(alg, key, claims(0, now, ttl), kid, der=True)
    return tokens


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir")
    parser.add_argument("--count", type=int, default=1000, help="tokens in each rotating set")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until the valid tokens expire")
    args = parser.parse_args()
    key_dir, token_dir = os.path.join(args.dir, "keys"), os.path.join(args.dir, "tokens")
    os.makedirs(os.path.join(token_dir, "cases"), exist_ok=True)
    keys = write_keys(key_dir)
    now = int(time.time())
    rows = []
    for alg in KID:
        name = alg.lower()
        with open(os.path.join(token_dir, name + ".tokens"), "w") as f:
            f.writelines(jws(alg, keys[alg], claims(i + 1, now, args.ttl), KID[alg]) + "\n" for i in range(args.count))
        for case, token in case_tokens(alg, keys, now, args.ttl, key_dir).items():
            path = os.path.join(token_dir, "cases", f"{name}-{case}.token")
            with open(path, "w") as f:
                f.write(token + "\n")
            if case == "valid":
                with open(os.path.join(token_dir, name + ".token"), "w") as f:
                    f.write(token + "\n")
            want, peer_want, _ = CASES[case]
            rows.append("\t".join((alg, case, path, want, peer_want)))
    with open(os.path.join(token_dir, "cases.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"fixtures: keys and jwks.json in {key_dir}; {args.count} rotating tokens per algorithm and "
          f"{len(rows)} check cases in {token_dir}")


if __name__ == "__main__":
    main()
