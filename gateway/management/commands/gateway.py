"""python manage.py gateway [--port 4000] [--render-only PATH]

Renders the LiteLLM proxy config (the plugin, no models) and starts the stock
`litellm` proxy with it. The plugin loads the portal's model list from Redis on
the first request and follows every change, without a restart; the provider
secrets in it are sealed with GATEWAY_SEALING_KEY, which only the portal and
the proxy hold. The proxy's environment holds its own settings only: never a
tenant's secret, nor the portal's."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from gateway import backends, plugin


def render() -> dict[str, Any]:
    """The LiteLLM config: no deployments (and so no secret) in it."""
    return {
        "model_list": [],
        "general_settings": {
            "master_key": "os.environ/LITELLM_MASTER_KEY",
            "custom_auth": "gateway.plugin.auth.user_api_key_auth",
            # The plugin makes every check itself (status, expiry, model access, budgets, rate
            # limits); LiteLLM's common checks would look up DB team/project records there are none of.
            "custom_auth_run_common_checks": False,
        },
        "litellm_settings": {
            "callbacks": ["gateway.plugin.callbacks.portal_callbacks"],
            "drop_params": True,
            "request_timeout": 600,
        },
    }


# What the proxy inherits from this process's environment: the system's basics and the
# gateway's own settings. Nothing of the portal's (DJANGO_SECRET_KEY, PORTAL_ENCRYPTION_KEYS,
# DATABASE_URL, mail, a provider key an operator exported...): LiteLLM reads its environment
# for provider defaults, and resolves `os.environ/NAME` from it. No REDIS_* either: LiteLLM would
# use that Redis for its own caches on every request; the plugin reads PORTAL_GATEWAY_REDIS_URL.
INHERITED = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "VIRTUAL_ENV",
                       "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY",
                       "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "GATEWAY_REDIS_PREFIX",
                       "PORTAL_PUBLIC_URL", "JSON_LOGS", "TIMEOUT_WORKER_HEALTHCHECK"})
INHERITED_PREFIXES = ("LC_", "PYTHON", "PORTAL_GATEWAY_", "LITELLM_", "OTEL_")


def proxy_base_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k in INHERITED or k.startswith(INHERITED_PREFIXES)}


class Command(BaseCommand):
    help = "Render the LiteLLM config and start the LiteLLM proxy with the plugin (it loads the routes from Redis)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=4000)
        parser.add_argument("--workers", type=int, default=1)
        parser.add_argument("--config-dir", default=str(Path(settings.BASE_DIR) / "var" / "gateway"))
        parser.add_argument("--render-only", action="store_true", help="Write the config and print its path.")

    def handle(self, *args: Any, host: str, port: int, workers: int, config_dir: str, render_only: bool,
               **options: Any) -> None:
        backend = backends.backend()
        if not backend.runs_plugin_proxy:
            raise CommandError(f"The {backend.name} gateway backend does not run the plugin's proxy: run its "
                               "own LiteLLM (with its database) instead.")
        config = render()
        directory = Path(config_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "litellm-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        if render_only:
            self.stdout.write(str(path))
            return
        backend.ensure_state()
        litellm = shutil.which("litellm", path=str(Path(sys.executable).parent)) or shutil.which("litellm")
        if litellm is None:
            raise CommandError("The litellm proxy is not installed (pip install 'litellm[proxy]').")
        proxy_env = {
            **proxy_base_env(os.environ),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(settings.BASE_DIR), os.environ.get("PYTHONPATH")])),
            "PORTAL_GATEWAY_REDIS_URL": settings.REDIS_URL,
            "LITELLM_MASTER_KEY": settings.LITELLM_MASTER_KEY or "sk-" + secrets.token_urlsafe(32),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PORTAL_PUBLIC_URL": os.environ.get("PORTAL_PUBLIC_URL", "the portal"),
            "GATEWAY_SEALING_KEY": ",".join(settings.GATEWAY_SEALING_KEYS),
            # Settlements Redis refuses are kept here until it takes them again (gateway/plugin/spool.py).
            "PORTAL_GATEWAY_SPOOL_DIR": os.environ.get("PORTAL_GATEWAY_SPOOL_DIR") or str(directory / "spool"),
            # The plugin's metrics of every worker, summed by GET /portal/metrics (gateway/plugin/metrics.py);
            # this proxy's own directory (LiteLLM empties it at start), never the web's.
            "PROMETHEUS_MULTIPROC_DIR": os.environ.get("PORTAL_GATEWAY_METRICS_DIR") or str(directory / "metrics"),
            # Installs the plugin's guard and routes in every proxy worker (gateway/plugin/__init__.py).
            "LITELLM_WORKER_STARTUP_HOOKS": plugin.startup_hooks(os.environ.get("LITELLM_WORKER_STARTUP_HOOKS", "")),
        }
        argv = [litellm, "--config", str(path), "--host", host, "--port", str(port), "--num_workers", str(workers)]
        self.stdout.write(f"Starting LiteLLM on http://{host}:{port}; the plugin loads the routes from Redis")
        self.stdout.flush()
        connections.close_all()  # the proxy must not inherit a database session
        os.execve(litellm, argv, proxy_env)
