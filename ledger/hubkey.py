"""The hub's Ed25519 signing key, kept in a file outside the database."""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from protocol import keys


@lru_cache(maxsize=1)
def hub_private_key() -> Ed25519PrivateKey:
    return keys.load_or_create_private_key(settings.USUFRUCT_HUB_KEY_FILE)


def hub_kid() -> str:
    return keys.key_id(hub_private_key())


def hub_public_b64() -> str:
    return keys.public_b64(hub_private_key())
