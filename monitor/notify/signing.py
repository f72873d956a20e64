"""Standard Webhooks signatures: HMAC-SHA256 over "{id}.{timestamp}.{body}", base64, "v1,".

Written against the specification with the standard library (it is a few lines); the tests
verify every signature with the reference `standardwebhooks` package.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random
from collections.abc import Sequence

from monitor.secrets import Secret

PREFIX = "whsec_"


def secret_key(secret: Secret) -> bytes:
    """The HMAC key: the base64-decoded part after `whsec_`."""
    text = secret.reveal()
    return base64.b64decode(text[len(PREFIX) :] if text.startswith(PREFIX) else text)


def sign(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[Secret]) -> str:
    """The `webhook-signature` header: one `v1,<sig>` per current secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    parts = []
    for secret in secrets:
        digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
        parts.append("v1," + base64.b64encode(digest).decode())
    return " ".join(parts)


def new_secret() -> Secret:
    """A fresh `whsec_` secret with 32 random bytes."""
    return Secret(PREFIX + base64.b64encode(_random.token_bytes(32)).decode())
