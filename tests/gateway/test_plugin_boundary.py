"""The plugin's boundary: `gateway.plugin` runs inside the stock LiteLLM image, which has no
Django and none of the portal. Every module of it imports in a process where Django cannot be
imported, and importing installs nothing into LiteLLM (that is `gateway.plugin.install`'s job,
run by the proxy's worker startup hook)."""

from __future__ import annotations

import asyncio
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import gateway.plugin

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(f"gateway.plugin.{m.name}" for m in pkgutil.iter_modules(gateway.plugin.__path__))

# Run in a fresh interpreter: Django (and with it the portal) refuses to import there.
PROBE = """
import importlib, json, sys

class RefuseDjango:
    def find_spec(self, name, path=None, target=None):
        if name == "django" or name.startswith("django.") or name == "portal" or name.startswith("portal."):
            raise ImportError(f"the plugin imported {name}")
        return None

sys.meta_path.insert(0, RefuseDjango())
failed = {}
for name in ["gateway.plugin", *sys.argv[1:]]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
app = sys.modules.get("litellm.proxy.proxy_server")
installed = app is not None and bool(getattr(app.app, "_portal_guard", False))
print(json.dumps({"failed": failed, "installed_at_import": installed}))
"""


def probe(modules: list[str]) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_every_plugin_module_imports_without_django_and_installs_nothing() -> None:
    assert "gateway.plugin.auth" in MODULES and "gateway.plugin.guard" in MODULES  # the walk found the package
    result = probe(MODULES)
    assert result["failed"] == {}
    assert result["installed_at_import"] is False


INSTALL_TWICE = """
import json
import gateway.plugin
from gateway.plugin import guard, routes
from litellm.proxy.proxy_server import app

before = guard.installed()
gateway.plugin.install()
gateway.plugin.install()
ours = [r.path for r in app.router.routes if getattr(r, "endpoint", None) is routes.model_info]
stack = app.build_middleware_stack()  # version.Front (health, contract) around guard.Guard, each once
print(json.dumps({"before": before, "after": guard.installed(), "guarded": app._portal_guard, "routes": ours,
                  "stack_wrapped_once": stack.__class__.__name__ == "Front" and stack.app.__class__.__name__ == "Guard"
                  and stack.app.app.__class__.__name__ not in ("Front", "Guard")}))
"""


def test_install_puts_the_guard_and_the_routes_in_place_once() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([sys.executable, "-c", INSTALL_TWICE], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"before": False, "after": True, "guarded": True, "routes": list(routes_paths()),
                      "stack_wrapped_once": True}


def routes_paths() -> tuple[str, ...]:
    from gateway.plugin import routes

    return tuple(reversed(routes.PATHS))  # each inserted at the front


def test_a_proxy_started_without_the_startup_hook_refuses_every_request(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi import Request
    from litellm.proxy._types import ProxyException

    from gateway.plugin import auth, guard

    monkeypatch.setattr(guard, "_installed", False)
    request = Request({"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [],
                       "query_string": b""})
    with pytest.raises(ProxyException) as refused:
        asyncio.run(auth.user_api_key_auth(request, "sk-anything"))
    assert refused.value.code == "503" and refused.value.type == "service_unavailable"
    assert "misconfigured" in refused.value.message


def test_the_startup_hook_is_added_to_an_operators_own() -> None:
    assert gateway.plugin.startup_hooks("") == "gateway.plugin:install"
    assert gateway.plugin.startup_hooks("mine:init, gateway.plugin:install") == "mine:init,gateway.plugin:install"
