"""Bearer secrets: generated here, stored only as SHA-256 hex digests."""

from __future__ import annotations

import hashlib
import secrets
from typing import NamedTuple

API_TOKEN_PREFIX = "lpt_"
VIRTUAL_KEY_PREFIX = "sk-"
DISPLAY_PREFIX_LENGTH = 11


class NewSecret(NamedTuple):
    plaintext: str
    digest: str
    display_prefix: str


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_secret(prefix: str) -> NewSecret:
    """A fresh 256-bit secret with a recognisable prefix."""
    plaintext = prefix + secrets.token_urlsafe(32)
    return NewSecret(plaintext, sha256_hex(plaintext), plaintext[:DISPLAY_PREFIX_LENGTH])
