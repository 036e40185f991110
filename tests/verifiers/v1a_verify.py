"""Checks Standard Webhooks `v1a` (ed25519) signatures with Python's
`cryptography` package, an implementation Herald has no part in.

Usage: v1a_verify.py PUBLIC_KEY MSG_ID TIMESTAMP SIGNATURE_HEADER < body
Prints one line per signature in the header: `valid` or `invalid` for a
`v1a` one, `other` for any other scheme. A signature found valid must fail
once the body has one byte changed, or this check is broken (it exits 1).
"""
import base64
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

public_key, msg_id, timestamp, header = sys.argv[1:5]
if not public_key.startswith("whpk_"):
    sys.exit("the public key must start with whpk_")
key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[len("whpk_"):], validate=True))
content = f"{msg_id}.{timestamp}.".encode() + sys.stdin.buffer.read()
tampered = content[:-1] + bytes([content[-1] ^ 1])


def verifies(signature, signed):
    try:
        key.verify(signature, signed)
        return True
    except InvalidSignature:
        return False


for part in header.split(" "):
    version, _, encoded = part.partition(",")
    if version != "v1a":
        print("other")
        continue
    signature = base64.b64decode(encoded, validate=True)
    if not verifies(signature, content):
        print("invalid")
    elif verifies(signature, tampered):
        sys.exit("a changed body verified too")
    else:
        print("valid")
