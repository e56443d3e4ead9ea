"""What the portal asks of whatever serves its keys and routes (`Backend`),
and the one registry that picks the backend named by `settings.GATEWAY_MODE`.

A backend is one module of this package that registers itself:

    @register("my-mode")
    class MyBackend: ...

and `GATEWAY_MODE=my-mode` then selects it: the registry imports
`gateway.backends.my_mode` the first time the mode is asked for. Callers ask
the backend what they need (`backend().ensure_state()`), never the mode."""

from __future__ import annotations

import datetime as dt
import importlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from gateway.models import VirtualKey


class GatewayError(Exception):
    """The gateway refused a change or could not be reached. `permanent`:
    retrying the same request will not help."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status


class Backend(Protocol):
    """Pushes the portal's state (`gateway.documents` says what it is) to the
    gateway, keeps it loaded, and brings back what only the gateway knows."""

    name: str
    # Whether `manage.py gateway` (the stock LiteLLM proxy with the portal's plugin) serves this backend.
    runs_plugin_proxy: bool
    # Whether the gateway stops a rotated-out secret by itself when its grace period ends; if not,
    # the key is pushed again then (`gateway.services.keys.keys_push_ended_graces`).
    ends_graces_itself: bool

    def push(self, kind: str, object_id: int) -> None:
        """One changed object (`SyncKind`), as it is now; gone if deleted."""

    def push_all(self) -> None:
        """Everything again (`gateway_sync`)."""

    def drift(self) -> list[str]:
        """What differs between the database and the gateway, one line each."""

    def ensure_state(self) -> bool:
        """Push everything again if the gateway lost its state; whether it had to."""

    def register_secret(self, key: VirtualKey, plaintext: str) -> None:
        """A new secret of `key`, inside the transaction that creates it (the
        only moment its plaintext exists); raises `GatewayError` to roll it back."""

    def pull_spend(self, since: dt.datetime | None = None) -> int:
        """Copy usage the gateway recorded itself into the usage records (the
        new ones counted); 0 where usage reaches the portal by the plugin's stream."""


BackendFactory = Callable[[], Backend]
F = TypeVar("F", bound=BackendFactory)
MODE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
registry: dict[str, BackendFactory] = {}


def register(mode: str) -> Callable[[F], F]:
    """Make `factory` (a backend class, or a function returning a backend)
    the backend of `mode`."""
    def add(factory: F) -> F:
        registry[mode] = factory
        return factory
    return add


def factory(mode: str) -> BackendFactory:
    """The backend of `mode`, importing its module on first use."""
    if mode not in registry and MODE.fullmatch(mode):
        module = f"{__package__}.{mode.replace('-', '_')}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    if mode not in registry:
        known = ", ".join(sorted(registry)) or "none loaded"
        raise ImproperlyConfigured(f"GATEWAY_MODE {mode!r}: no gateway backend registers this mode "
                                   f"(gateway/backends/; registered: {known})")
    return registry[mode]


def configured_mode() -> str:
    """The one place that reads the setting."""
    return str(settings.GATEWAY_MODE)


def check_configured() -> None:
    """At start-up: a GATEWAY_MODE no backend registers fails loudly then, not at the first push."""
    factory(configured_mode())


def backend() -> Backend:
    return factory(configured_mode())()
