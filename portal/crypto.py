"""Encryption at rest for secrets the portal must be able to read back
(provider API keys, Langfuse secret keys), with the keys in
`PORTAL_ENCRYPTION_KEYS` (first encrypts, all decrypt)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in settings.PORTAL_ENCRYPTION_KEYS])
    except ValueError as exc:
        raise ImproperlyConfigured("PORTAL_ENCRYPTION_KEYS holds a value that is not a Fernet key") from exc


def encrypt_json(value: dict[str, Any]) -> str:
    return _fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode() if value else ""


def decrypt_json(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise ImproperlyConfigured("A stored secret cannot be decrypted with PORTAL_ENCRYPTION_KEYS") from exc


def generate_key() -> str:
    return Fernet.generate_key().decode()
