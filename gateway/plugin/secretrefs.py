"""Values LiteLLM would take for a secret reference or a config indirection
instead of a value: `os.environ/NAME` (the router resolves it in every string
of a deployment's `litellm_params`, pass-through headers even in the middle of
a string), `oidc/<provider>/...` (Azure AD and AWS web identity tokens read an
environment variable or a file with it), and the secret managers' prefixes.

LiteLLM itself matches only the exact lower-case prefix; this matches more
(any case, after leading whitespace, `os.environ/` anywhere), so that a later
LiteLLM that normalises a value cannot turn a refused look-alike into a real
reference. Standard library only: the portal refuses such values with it, and
the plugin never applies one."""

from __future__ import annotations

from typing import Any

# Every prefix the installed LiteLLM (1.106) dereferences: secret_managers/main.py `get_secret`
# (os.environ/, oidc/), llms/base_llm/auth/identity_source.py (the secret managers' pointers),
# secret_managers/aws_secret_manager.py (aws_kms/).
PREFIXES = ("os.environ/", "oidc/", "hashicorp_vault/", "aws_secret_manager/", "google_secret_manager/",
            "azure_key_vault/", "cyberark/", "aws_kms/")
ANYWHERE = ("os.environ/",)
MAX_DEPTH = 20


def is_secret_reference(text: str) -> bool:
    folded = text.lstrip().casefold()
    return folded.startswith(PREFIXES) or any(marker in folded for marker in ANYWHERE)


def find_secret_reference(value: Any, path: str = "", depth: int = 0) -> str | None:
    """The dotted path of the first string in `value` (keys included) that is a
    secret reference ("" for `value` itself), or None. Never the value itself."""
    if isinstance(value, str):
        return path if is_secret_reference(value) else None
    if depth > MAX_DEPTH:
        return path  # nothing a tenant sends is this deep; refuse rather than leave it unread
    if isinstance(value, dict):
        for key, item in value.items():
            where = _join(path, str(key))
            if isinstance(key, str) and is_secret_reference(key):
                return path
            found = find_secret_reference(item, where, depth + 1)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for n, item in enumerate(value):
            found = find_secret_reference(item, _join(path, str(n)), depth + 1)
            if found is not None:
                return found
    return None


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part
