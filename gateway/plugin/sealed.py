"""Secrets sealed for the gateway: the portal seals provider secrets and
Langfuse secret keys before they go into Redis (where an append-only file
writes everything to disk), and the plugin unseals them in memory.

The key is `GATEWAY_SEALING_KEY` (comma separated: the first seals, all
unseal, so a new key can be put first and the old one dropped once the
portal has re-pushed). Only the portal and the proxies hold it; the plugin
takes it out of its process's environment when it loads, so that nothing that
resolves `os.environ/NAME` can read it afterwards.

AES-SIV (RFC 5297): authenticated, and deterministic, so the same secret seals
to the same text and the portal's drift check can compare documents as they
are. The field name is the associated data: a sealed value cannot be moved to
another field. Standard library and `cryptography` (a LiteLLM dependency) only."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.plugin.secretrefs import find_secret_reference

log = logging.getLogger("portal.gateway")

ENV = "GATEWAY_SEALING_KEY"
PREFIX = "sealed:v1:"
INFO = b"llmops-portal gateway sealing v1"
MIN_LENGTH = 32
# The litellm_params that hold a provider's secret (the provider specs' secrets, gateway/providers.py).
SECRET_PARAMS = frozenset({"api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
                           "vertex_credentials"})
# Values that are no secret: what the portal sets for deployments without a key.
PLACEHOLDERS = frozenset({"mock", "none"})


class SealingError(Exception):
    """A value cannot be sealed or unsealed (no key, another key, damaged)."""


def parse_keys(value: str | Iterable[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [k.strip() for k in items if k.strip()]


def _aead(secret: str) -> AESSIV:
    key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=INFO).derive(secret.encode())
    return AESSIV(key)


class Sealer:
    def __init__(self, keys: str | Iterable[str]) -> None:
        secrets = parse_keys(keys)
        short = [k for k in secrets if len(k) < MIN_LENGTH]
        if short:
            raise SealingError(f"{ENV}: every key needs at least {MIN_LENGTH} characters")
        self._aeads = [_aead(k) for k in secrets]

    @property
    def usable(self) -> bool:
        return bool(self._aeads)

    def seal(self, value: str, field: str) -> str:
        if not self._aeads:
            raise SealingError(f"{ENV} is not set")
        token = self._aeads[0].encrypt(value.encode(), [field.encode()])
        return PREFIX + base64.urlsafe_b64encode(token).decode().rstrip("=")

    def unseal(self, value: str, field: str) -> str:
        if not is_sealed(value):
            raise SealingError("not a sealed value")
        if not self._aeads:
            raise SealingError(f"{ENV} is not set")
        body = value[len(PREFIX):]
        try:
            token = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            raise SealingError("a damaged sealed value") from None
        for aead in self._aeads:
            try:
                return aead.decrypt(token, [field.encode()]).decode()
            except (InvalidTag, ValueError):
                continue
        raise SealingError(f"sealed with another key than this {ENV}")


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def proxy_sealer() -> tuple[Sealer, str | None]:
    """The proxy's sealer, and what is wrong with its key (None: nothing). Made
    on first use; the key then leaves the environment (see the module's docstring)."""
    global _proxy
    if _proxy is None:
        keys = os.environ.pop(ENV, "")
        try:
            sealer, problem = Sealer(keys), None if parse_keys(keys) else f"{ENV} is not set"
        except SealingError as exc:
            sealer, problem = Sealer(""), str(exc)
        _proxy = (sealer, problem)
    return _proxy


_proxy: tuple[Sealer, str | None] | None = None


# A deployment the proxy must not call answers through this LiteLLM provider: a clear
# error, instead of a crash, a call without its key, or a reference resolved.
UNAVAILABLE = "portal_unavailable"
REASONS = {  # words the gateway's error filter keeps (gateway/plugin/guard.py `public_message`)
    "sealing": "This route cannot be used right now: the gateway cannot decrypt its provider credential "
               "(the proxy's GATEWAY_SEALING_KEY is missing or not the portal's). Tell the platform operator.",
    "reference": "This route cannot be used: its configuration holds a secret reference, which the gateway "
                 "refuses. An admin of your organization must correct the route in the portal.",
    "outbound": "This route cannot be used: its provider address is on a network the portal does not connect "
                "to. An admin of your organization must correct the credential's api_base in the portal.",
}


def unavailable_entry(group: str, model_id: str, reason: str, model_info: dict[str, Any] | None = None,
                      ) -> dict[str, Any]:
    return {"model_name": group, "litellm_params": {"model": f"{UNAVAILABLE}/{reason}"},
            "model_info": {**(model_info or {}), "id": model_id, "unavailable": reason}}


def unseal_entry(entry: dict[str, Any], sealer: Sealer) -> dict[str, Any]:
    """A model list entry as LiteLLM may apply it: secrets unsealed (in memory
    only); an entry with a secret reference or a value this proxy cannot unseal
    is replaced by one that answers a clear error. Logs never carry a value."""
    info = entry.get("model_info") or {}
    model_id, group = str(info.get("id", "?")), str(entry.get("model_name", "?"))
    params = dict(entry.get("litellm_params") or {})
    if str(params.get("model", "")).startswith(f"{UNAVAILABLE}/"):
        return {**entry, "litellm_params": params}
    where = find_secret_reference(params)
    if where is not None:
        log.error("gateway: deployment %s of %s holds a secret reference in litellm_params.%s; not applied",
                  model_id, group, where)
        return unavailable_entry(group, model_id, "reference", info)
    for field, value in params.items():
        if is_sealed(value):
            try:
                params[field] = sealer.unseal(value, field)
            except SealingError as exc:
                log.error("gateway: deployment %s of %s is unusable: its %s cannot be unsealed (%s)",
                          model_id, group, field, exc)
                return unavailable_entry(group, model_id, "sealing", info)
        elif field in SECRET_PARAMS and value not in PLACEHOLDERS:
            log.warning("gateway: deployment %s of %s has an unsealed %s; the portal seals secrets since "
                        "this version: push the state again (manage.py gateway_sync)", model_id, group, field)
    return {**entry, "litellm_params": params}


def register_unavailable_provider() -> None:
    """LiteLLM's custom provider behind `portal_unavailable/<reason>`."""
    import litellm
    from litellm import CustomLLM
    from litellm.llms.custom_llm import CustomLLMError

    if any(item.get("provider") == UNAVAILABLE for item in litellm.custom_provider_map):
        return

    class Unavailable(CustomLLM):
        def _fail(self, model: str = "", **kwargs: Any) -> Any:
            reason = model.rsplit("/", 1)[-1]
            raise CustomLLMError(503, REASONS.get(reason, REASONS["reference"]))

        def completion(self, *args: Any, **kwargs: Any) -> Any:
            return self._fail(**kwargs)

        async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
            return self._fail(**kwargs)

        def streaming(self, *args: Any, **kwargs: Any) -> Any:
            return self._fail(**kwargs)

        async def astreaming(self, *args: Any, **kwargs: Any) -> Any:
            return self._fail(**kwargs)

        def embedding(self, *args: Any, **kwargs: Any) -> Any:
            return self._fail(**kwargs)

        async def aembedding(self, *args: Any, **kwargs: Any) -> Any:
            return self._fail(**kwargs)

    litellm.custom_provider_map.append({"provider": UNAVAILABLE, "custom_handler": Unavailable()})
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
