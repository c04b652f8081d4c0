"""Mints a JWT with PyJWT for the control-plane tests.

Usage: jwt_mint.py ALG KEYFILE CLAIMS_JSON [KID]
  ALG       HS256, RS256, ES256, ... or "none" (an unsigned token, to be refused), or
            "HS256-raw": HS256 by hand over the file's bytes as they are (PyJWT refuses a PEM
            as an HMAC secret; the server must refuse the result too)
  KEYFILE   the HMAC secret (raw bytes, trailing newline trimmed) or a private key PEM
  CLAIMS    a JSON object; "iat", "exp" and "nbf" given as strings "+N"/"-N" are now +/- N s
Prints the token on stdout.

Or: jwt_mint.py jwks OUT KID=PEMFILE [KID=PEMFILE ...]: writes a JWKS of those keys' public
halves (EC or RSA, with "kid", "alg" and "use") to OUT, replacing it atomically.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time

import jwt


def write_jwks(out, pairs):
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    keys = []
    for pair in pairs:
        kid, path = pair.split("=", 1)
        with open(path, "rb") as f:
            private = load_pem_private_key(f.read(), password=None)
        public = private.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            jwk = json.loads(ECAlgorithm.to_jwk(public))
            jwk["alg"] = "ES256"
        else:
            jwk = json.loads(RSAAlgorithm.to_jwk(public))
            jwk["alg"] = "RS256"
        jwk.update({"kid": kid, "use": "sig"})
        keys.append(jwk)
    temporary = out + ".tmp"
    with open(temporary, "w") as f:
        json.dump({"keys": keys}, f)
    os.replace(temporary, out)


def main():
    if sys.argv[1] == "jwks":
        write_jwks(sys.argv[2], sys.argv[3:])
        return
    alg, key_file, claims_text = sys.argv[1], sys.argv[2], sys.argv[3]
    kid = sys.argv[4] if len(sys.argv) > 4 else None
    claims = json.loads(claims_text)
    now = int(time.time())
    for name in ("iat", "exp", "nbf"):
        value = claims.get(name)
        if isinstance(value, str) and value[:1] in "+-":
            claims[name] = now + int(value)
    headers = {"kid": kid} if kid else None
    if alg == "none":
        print(jwt.encode(claims, None, algorithm="none"))
        return
    with open(key_file, "rb") as f:
        key = f.read()
    if alg == "HS256-raw":
        print(hs256_by_hand(claims, key))
        return
    if alg.startswith("HS"):
        key = key.rstrip(b"\r\n")
    print(jwt.encode(claims, key, algorithm=alg, headers=headers))


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_by_hand(claims, key):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


if __name__ == "__main__":
    main()
