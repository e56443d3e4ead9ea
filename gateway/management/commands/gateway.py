"""python manage.py gateway [--port 4000] [--render-only PATH]

Renders the LiteLLM proxy config from the portal's routes (model list,
fallbacks, retries, the plugin) and starts the stock `litellm` proxy with it.
Provider secrets are not written to the file: the config names environment
variables, which are given to the proxy process only. Route changes made
later reach the running proxy through Redis, without a restart."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from gateway import documents, sync

SECRET_FIELDS = ("api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "vertex_credentials")


def render(env: dict[str, str]) -> dict[str, Any]:
    """The LiteLLM config; secrets go into `env` as PORTAL_SECRET_<n>."""
    doc = documents.models_document()
    model_list = []
    for n, entry in enumerate(doc["model_list"]):
        params = dict(entry["litellm_params"])
        for field in SECRET_FIELDS:
            if field in params and params[field] not in ("mock", "none"):
                name = f"PORTAL_SECRET_{n}_{field.upper()}"
                env[name] = str(params[field])
                params[field] = f"os.environ/{name}"
        model_list.append({**entry, "litellm_params": params})
    return {
        "model_list": model_list,
        "router_settings": {"fallbacks": doc["fallbacks"],
                            "model_group_retry_policy": {g: retry(n) for g, n in doc["retries"].items()}},
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


def retry(n: int) -> dict[str, int]:
    from gateway.plugin.state import retry_policy

    return retry_policy(n)


class Command(BaseCommand):
    help = "Render the LiteLLM config from the portal's routes and start the LiteLLM proxy with the plugin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=4000)
        parser.add_argument("--workers", type=int, default=1)
        parser.add_argument("--config-dir", default=str(Path(settings.BASE_DIR) / "var" / "gateway"))
        parser.add_argument("--render-only", action="store_true", help="Write the config and print its path.")

    def handle(self, *args: Any, host: str, port: int, workers: int, config_dir: str, render_only: bool,
               **options: Any) -> None:
        if settings.GATEWAY_MODE != "managed":
            raise CommandError("GATEWAY_MODE is litellm-admin: run LiteLLM with its own database instead.")
        env: dict[str, str] = {}
        config = render(env)
        directory = Path(config_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "litellm-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        if render_only:
            self.stdout.write(str(path))
            return
        sync.ensure_state_loaded()
        litellm = shutil.which("litellm", path=str(Path(sys.executable).parent)) or shutil.which("litellm")
        if litellm is None:
            raise CommandError("The litellm proxy is not installed (pip install 'litellm[proxy]').")
        proxy_env = {
            **os.environ, **env,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(settings.BASE_DIR), os.environ.get("PYTHONPATH")])),
            "PORTAL_GATEWAY_REDIS_URL": settings.REDIS_URL,
            "LITELLM_MASTER_KEY": settings.LITELLM_MASTER_KEY or "sk-" + secrets.token_urlsafe(32),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PORTAL_PUBLIC_URL": os.environ.get("PORTAL_PUBLIC_URL", "the portal"),
        }
        # The proxy needs none of the portal's own secrets. And no REDIS_*: LiteLLM would use that
        # Redis for its own caches on every request; the plugin reads PORTAL_GATEWAY_REDIS_URL.
        for name in ("DJANGO_SECRET_KEY", "PORTAL_ENCRYPTION_KEYS", "DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL",
                     "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"):
            proxy_env.pop(name, None)
        argv = [litellm, "--config", str(path), "--host", host, "--port", str(port), "--num_workers", str(workers)]
        self.stdout.write(f"Starting LiteLLM on http://{host}:{port} with {len(config['model_list'])} deployment(s)")
        self.stdout.flush()
        connections.close_all()  # the proxy must not inherit a database session
        os.execve(litellm, argv, proxy_env)
