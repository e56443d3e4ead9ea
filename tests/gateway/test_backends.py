"""The gateway backend registry: the mode is read in one place, and a backend
is one module: registered, it is what sync, the key service, the tasks and
the commands use, with no other change."""

from __future__ import annotations

import ast
import datetime as dt
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.utils import timezone

import gateway.backends
from gateway import sync, tasks_admin
from gateway.backends import base
from gateway.backends.managed import ManagedBackend
from gateway.models import KeyGraceHash, SyncOutbox, VirtualKey
from tests.factories import Tenant

ROOT = Path(__file__).resolve().parents[2]


def source_files() -> list[str]:
    """The project's own modules (the Django apps and the plugin), not the tests."""
    return sorted(str(f.relative_to(ROOT)) for app in ("portal", "gateway", "evals") for f in (ROOT / app).rglob("*.py"))


def mentions(path: str, name: str) -> list[int]:
    """Lines where the code (not a docstring or comment) names `name`."""
    tree = ast.parse((ROOT / path).read_text())
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == name or isinstance(node, ast.Name) and node.id == name
            or isinstance(node, ast.Constant) and node.value == name]


def test_gateway_mode_is_read_only_by_the_registry() -> None:
    readers = {f: lines for f in source_files() if (lines := mentions(f, "GATEWAY_MODE"))}
    assert set(readers) == {"portal/settings.py", "gateway/backends/base.py"}, readers
    assert len(readers["gateway/backends/base.py"]) == 1  # configured_mode()


def test_no_code_outside_the_backends_names_a_mode() -> None:
    named = {f: lines for f in source_files() if not f.startswith("gateway/backends/") and f != "portal/settings.py"
             for mode in ("litellm-admin", "managed") if (lines := mentions(f, mode))}
    assert named == {}


@dataclass
class RecordingBackend:
    """A third backend, as a new module would define it."""

    name = "recording"
    runs_plugin_proxy = False
    ends_graces_itself = False
    pushed: list[tuple[str, int]] = field(default_factory=list)
    secrets: list[tuple[int, str]] = field(default_factory=list)
    pushed_all: int = 0

    def push(self, kind: str, object_id: int) -> None:
        self.pushed.append((kind, object_id))

    def push_all(self) -> None:
        self.pushed_all += 1

    def drift(self) -> list[str]:
        return ["stale   everything"]

    def ensure_state(self) -> bool:
        return True

    def register_secret(self, key: VirtualKey, plaintext: str) -> None:
        self.secrets.append((key.pk, plaintext))

    def pull_spend(self, since: dt.datetime | None = None) -> int:
        return 7


@pytest.fixture
def recording(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingBackend]:
    """Listed before the tenant fixtures, so that they are built with this backend."""
    backend = RecordingBackend()
    monkeypatch.setitem(base.registry, "recording", lambda: backend)
    settings.GATEWAY_MODE = "recording"
    yield backend


@pytest.mark.django_db(transaction=True)
def test_a_third_backend_registered_is_what_sync_and_the_key_service_use(recording: RecordingBackend,
                                                                        acme: Tenant) -> None:
    assert (acme.key.pk, acme.key_plaintext) in recording.secrets  # told inside the creating transaction
    assert ("key", acme.key.pk) in recording.pushed  # pushed from the outbox after commit
    body = acme.client("owner").post(acme.url("keys/"), {"name": "k", "team": acme.team.pk,
                                                         "project": acme.project.pk}, format="json").json()
    assert (body["id"], body["key"]) in recording.secrets and ("key", body["id"]) in recording.pushed
    assert not SyncOutbox.objects.filter(done_at=None).exists()
    assert sync.ensure_state_loaded() is True
    assert tasks_admin.sync_pull_spend() == 7
    KeyGraceHash.objects.create(key=acme.key, key_hash="0" * 64, key_prefix="sk-old",
                                expires_at=timezone.now() - dt.timedelta(minutes=1))
    assert tasks_admin.sync_expire_grace() == 1  # this backend does not end graces itself
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("gateway_sync", "--check", stdout=out)
    assert "stale   everything" in out.getvalue()
    call_command("gateway_sync", stdout=io.StringIO())
    assert recording.pushed_all == 1
    with pytest.raises(CommandError, match="recording gateway backend does not run the plugin's proxy"):
        call_command("gateway", "--render-only")


def test_a_backend_is_one_new_module_the_registry_imports(settings: Any, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    (tmp_path / "one_module.py").write_text(
        "from gateway.backends.base import register\n\n\n"
        "@register('one-module')\n"
        "class OneModuleBackend:\n"
        "    name = 'one-module'\n")
    monkeypatch.setattr(gateway.backends, "__path__", [*gateway.backends.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "gateway.backends.one_module", raising=False)
    monkeypatch.delitem(base.registry, "one-module", raising=False)
    settings.GATEWAY_MODE = "one-module"
    try:
        assert type(base.backend()).__name__ == "OneModuleBackend"
    finally:
        sys.modules.pop("gateway.backends.one_module", None)


def test_an_unknown_mode_fails_loudly_and_the_default_is_managed(settings: Any) -> None:
    for mode in ("no-such-mode", "base", "../etc", ""):
        settings.GATEWAY_MODE = mode
        with pytest.raises(ImproperlyConfigured, match="no gateway backend registers this mode"):
            base.check_configured()
    settings.GATEWAY_MODE = "managed"
    assert isinstance(base.backend(), ManagedBackend)
