#!/usr/bin/env python3
"""Cross-implementation test vectors for PortcullisJOSE.

Valid tokens are minted by joserfc (an independent JOSE implementation, PyPI `joserfc`); hostile
tokens are assembled by hand with `cryptography` where joserfc (rightly) refuses to build them.
Writes `vectors.json` next to this script: the issuer's public JWKS, its HMAC secrets, a pinned
clock, and tokens with the expected outcome (`valid` or a rejection reason code).

    python3 Tests/PortcullisJOSETests/Vectors/generate_vectors.py [OUTPUT.json]

Re-running makes new keys and tokens. The Swift tests read the committed `vectors.json`, and one
test also runs this script into a temporary file and checks the fresh set (so a drift in either
implementation shows up).
"""
import base64
import hashlib
import hmac
import json
import os
import warnings

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, OctKey, RSAKey

warnings.filterwarnings("ignore")  # joserfc warns that RFC 9864 deprecates the EdDSA name

NOW = 1_800_000_000
ISS = "https://issuer.example"
AUD = "api://orders"
GOOD = {"iss": ISS, "aud": AUD, "sub": "user-1", "exp": NOW + 3600, "iat": NOW - 60, "nbf": NOW - 60,
        "jti": "id-1", "scope": "orders:read orders:write", "client_id": "cli"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header, claims) -> str:
    h = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    c = claims if isinstance(claims, str) else json.dumps(claims, separators=(",", ":"))
    return b64(h.encode()) + "." + b64(c.encode())


def main():
    keys = {}
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]:
        keys[alg] = RSAKey.generate_key(2048, parameters={"kid": alg.lower(), "alg": alg, "use": "sig"})
    keys["ES256"] = ECKey.generate_key("P-256", parameters={"kid": "es256", "alg": "ES256"})
    keys["ES384"] = ECKey.generate_key("P-384", parameters={"kid": "es384", "alg": "ES384"})
    keys["EdDSA"] = OKPKey.generate_key("Ed25519", parameters={"kid": "eddsa", "alg": "EdDSA"})
    secrets = {}
    for alg, size in [("HS256", 32), ("HS384", 48), ("HS512", 64)]:
        secret = os.urandom(size)
        secrets[alg] = secret
        keys[alg] = OctKey.import_key(secret, parameters={"kid": alg.lower()})

    jwks = {"keys": [keys[a].as_dict(private=False) for a in keys if not a.startswith("HS")]}
    # An encryption key and a short RSA key the verifier must ignore (and log), not choke on.
    enc = RSAKey.generate_key(2048, parameters={"kid": "enc", "use": "enc", "alg": "RS256"})
    weak = RSAKey.generate_key(1024, parameters={"kid": "weak", "alg": "RS256"})
    jwks["keys"] += [enc.as_dict(private=False), weak.as_dict(private=False)]

    tokens = []

    def add(name, token, expect):
        tokens.append({"name": name, "token": token, "expect": expect})

    for alg, key in keys.items():
        add(f"joserfc {alg}", jwt.encode({"alg": alg, "kid": key.kid, "typ": "at+jwt"}, GOOD, key, algorithms=[alg]), "valid")

    rsa_key = keys["RS256"]
    rsa_private = rsa_key.private_key
    ec_private = keys["ES256"].private_key

    def sign_rs256(signing_input: str) -> str:
        sig = rsa_private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64(sig)

    def rs256(header_extra=None, claims=None, raw_header=None, raw_claims=None):
        header = {"alg": "RS256", "kid": "rs256", "typ": "JWT", **(header_extra or {})}
        return sign_rs256(compact(raw_header or header, raw_claims or (claims if claims is not None else GOOD)))

    # alg none, in every spelling, with and without a signature.
    for spelling in ["none", "None", "NONE", "nOnE"]:
        unsigned = compact({"alg": spelling, "kid": "rs256"}, GOOD)
        add(f"alg {spelling}, empty signature", unsigned + ".", "alg_not_allowed")
        add(f"alg {spelling}, RSA signature kept", unsigned + "." + rs256().split(".")[2], "alg_not_allowed")

    # HS256 keyed with the RSA public key, as PEM and as JWK text (the classic key-confusion attack).
    pem = rsa_private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk_text = json.dumps(rsa_key.as_dict(private=False)).encode()
    for form, secret in [("PEM", pem), ("JWK", jwk_text)]:
        for kid in ["rs256", "hs256"]:
            signing_input = compact({"alg": "HS256", "kid": kid, "typ": "JWT"}, GOOD)
            mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            expect = "alg_not_allowed" if kid == "rs256" else "bad_signature"
            add(f"HS256 keyed with the RSA public key ({form}), kid {kid}", signing_input + "." + b64(mac), expect)

    # ECDSA signatures that must never verify.
    es_input = compact({"alg": "ES256", "kid": "es256"}, GOOD)
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # the order of P-256
    add("ES256 all-zero signature", es_input + "." + b64(bytes(64)), "bad_signature")
    add("ES256 r = s = n", es_input + "." + b64(n.to_bytes(32, "big") * 2), "bad_signature")
    der = ec_private.sign(es_input.encode(), ec.ECDSA(hashes.SHA256()))
    add("ES256 DER-encoded signature", es_input + "." + b64(der), "bad_signature")

    # Keys named by the token itself must never be used.
    attacker = RSAKey.generate_key(2048, parameters={"kid": "attacker", "alg": "RS256"})
    attacker_jwk = attacker.as_dict(private=False)
    for kid, expect in [("attacker", "unknown_kid"), ("rs256", "bad_signature")]:
        add(f"embedded jwk, kid {kid}",
            jwt.encode({"alg": "RS256", "kid": kid, "jwk": attacker_jwk}, GOOD, attacker, algorithms=["RS256"]), expect)
        add(f"jku elsewhere, kid {kid}",
            jwt.encode({"alg": "RS256", "kid": kid, "jku": "https://attacker.example/jwks.json"}, GOOD, attacker, algorithms=["RS256"]), expect)
        add(f"x5u elsewhere, kid {kid}",
            jwt.encode({"alg": "RS256", "kid": kid, "x5u": "https://attacker.example/cert.pem"}, GOOD, attacker, algorithms=["RS256"]), expect)

    add("unknown kid", rs256({"kid": "nope"}), "unknown_kid")
    add("kid path traversal", rs256({"kid": "../../etc/passwd"}), "unknown_kid")
    add("kid of an encryption key", rs256({"kid": "enc"}), "unknown_kid")
    add("kid of a 1024-bit key", jwt.encode({"alg": "RS256", "kid": "weak"}, GOOD, weak, algorithms=["RS256"]), "unknown_kid")
    add("RS256 token, kid of the PS256 key", rs256({"kid": "ps256"}), "alg_not_allowed")

    add("expired", rs256(claims={**GOOD, "exp": NOW - 3600}), "expired")
    add("expired within leeway is valid", rs256(claims={**GOOD, "exp": NOW - 10}), "valid")
    add("nbf in the future", rs256(claims={**GOOD, "nbf": NOW + 3600}), "not_yet_valid")
    add("iat in the future", rs256(claims={**GOOD, "iat": NOW + 3600}), "issued_in_future")
    add("exp as a string", rs256(claims={**GOOD, "exp": str(NOW + 3600)}), "invalid_claim")
    add("exp missing", rs256(claims={k: v for k, v in GOOD.items() if k != "exp"}), "missing_claim")
    add("exp beyond int64", rs256(raw_claims=json.dumps(GOOD).replace(str(NOW + 3600), "1e300")), "invalid_claim")
    add("wrong iss", rs256(claims={**GOOD, "iss": "https://evil.example"}), "unknown_issuer")
    add("wrong aud", rs256(claims={**GOOD, "aud": "api://other"}), "wrong_audience")
    add("aud array with the audience", rs256(claims={**GOOD, "aud": ["api://other", AUD]}), "valid")
    add("aud missing", rs256(claims={k: v for k, v in GOOD.items() if k != "aud"}), "missing_claim")
    dup = json.dumps(GOOD)[:-1] + ', "sub": "admin"}'
    add("duplicate claim names", rs256(raw_claims=dup), "malformed")
    dup_escaped = json.dumps(GOOD)[:-1] + ', "\\u0073ub": "admin"}'
    add("duplicate claim names, one escaped", rs256(raw_claims=dup_escaped), "malformed")
    add("duplicate header alg", rs256(raw_header='{"alg":"HS256","alg":"RS256","kid":"rs256"}'), "malformed")
    add("typ other", rs256({"typ": "JOSE"}), "invalid_typ")
    add("typ application/at+jwt", rs256({"typ": "application/AT+JWT"}), "valid")

    # base64url variants: each signed over its own (non-canonical) text so only strictness catches it.
    good = rs256()
    h, c, _ = good.split(".")
    add("padding in the header", sign_rs256(h + "=" * (-len(h) % 4 or 4) + "." + c), "malformed")
    # "?~~~~?" encodes with both '+' and '/' in the standard alphabet.
    std_h = base64.b64encode(json.dumps({"alg": "RS256", "kid": "rs256", "x": "?~~~~?"}).encode()).decode().rstrip("=")
    assert "+" in std_h and "/" in std_h
    add("standard base64 alphabet", sign_rs256(std_h + "." + c), "malformed")
    add("whitespace in the claims", sign_rs256(h + "." + c[:10] + " " + c[10:]), "malformed")
    add("newline in the claims", sign_rs256(h + "." + c[:10] + "\n" + c[10:]), "malformed")
    # Non-zero trailing bits: same decoded bytes, different text.
    last = c[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if len(c) % 4 in (2, 3):
        add("non-zero trailing bits", sign_rs256(h + "." + c[:-1] + alphabet[alphabet.index(last) + 1]), "malformed")
    add("padding on the signature", good + "==", "malformed")

    add("crit", rs256({"crit": ["exp"], "exp": 1}), "unsupported_header")
    add("zip", rs256({"zip": "DEF"}), "unsupported_header")
    add("b64 false", rs256({"b64": False, "crit": ["b64"]}), "unsupported_header")
    add("b64 false without crit", rs256({"b64": False}), "unsupported_header")
    add("JWE (five segments)", "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d", "unsupported_serialization")
    add("JSON serialization", json.dumps({"payload": c, "protected": h, "signature": good.split(".")[2]}), "unsupported_serialization")
    add("two segments", h + "." + c, "malformed")
    add("four segments", good + ".x", "malformed")
    add("oversize (over 8 KiB)", rs256(claims={**GOOD, "pad": "x" * 9000}), "token_too_large")
    add("BOM in the claims", sign_rs256(h + "." + b64(b"\xef\xbb\xbf" + json.dumps(GOOD).encode())), "malformed")
    add("invalid UTF-8 in the claims", sign_rs256(h + "." + b64(json.dumps({**GOOD, "sub": "X"}).encode().replace(b'"X"', b'"\xc3\x28"'))), "malformed")
    add("NaN in the claims", rs256(raw_claims=json.dumps(GOOD)[:-1] + ', "x": NaN}'), "malformed")
    add("Infinity in the claims", rs256(raw_claims=json.dumps(GOOD)[:-1] + ', "x": Infinity}'), "malformed")
    deep = json.dumps(GOOD)[:-1] + ', "x": ' + "[" * 70 + "]" * 70 + "}"
    add("nesting deeper than 64", rs256(raw_claims=deep), "malformed")
    ok_deep = json.dumps(GOOD)[:-1] + ', "x": ' + "[" * 60 + "]" * 60 + "}"
    add("nesting of 61 levels", rs256(raw_claims=ok_deep), "valid")
    add("claims not an object", rs256(raw_claims="[1,2]"), "malformed")
    add("tampered claims", h + "." + b64(json.dumps({**GOOD, "sub": "admin"}).encode()) + "." + good.split(".")[2], "bad_signature")

    out = {
        "generator": "joserfc " + __import__("joserfc").__version__,
        "now": NOW, "issuer": ISS, "audience": AUD,
        "jwks": jwks,
        "hmac_secrets": [{"kid": alg.lower(), "alg": alg, "secret_base64url": b64(s)} for alg, s in secrets.items()],
        "tokens": tokens,
    }
    import sys
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {len(tokens)} tokens to {path}")


if __name__ == "__main__":
    main()
