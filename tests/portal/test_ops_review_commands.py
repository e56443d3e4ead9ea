"""Reviewer R2 (issue 11, item 1): the README's commands, typed by an operator with one thing wrong, answer
with one line saying what to do and a non-zero exit, never a traceback. Each case runs `manage.py` as a
process from the checkout with a bare environment (PORTAL_ENV_FILE=none: no env file is read).
Findings R2-A1, R2-A2, R2-A3, R2-D2 (fixed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
FERNET = "dGVzdC1lbmNyeXB0aW9uLWtleS0wMDAwMDAwMDAwMDA="
CONFIG = ("DJANGO_SECRET_KEY", "PORTAL_ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL", "PORTAL_ENV_FILE",
          "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "LOG_LEVEL", "TIME_ZONE", "GATEWAY_MODE")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def manage(*argv: str, **settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in CONFIG}
    env.update({"PORTAL_ENV_FILE": "none", "DJANGO_SECRET_KEY": "r2-review-" + "x" * 40,
                "PORTAL_ENCRYPTION_KEYS": FERNET, "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/8"),
                **settings})
    return subprocess.run([sys.executable, "manage.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def assert_one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("variable,value", [("LOG_LEVEL", "LOUD"), ("TIME_ZONE", "Mars/Base"), ("GATEWAY_MODE", "weird")])
def test_a_bad_value_of_a_plain_setting_is_one_line(variable: str, value: str) -> None:
    result = manage("check", **{variable: value})
    assert_one_line(result, "Configuration error", variable)


@pytest.mark.parametrize("variable", ["REDIS_URL", "CELERY_BROKER_URL"])
def test_a_redis_url_that_is_not_one_is_refused_at_start(variable: str) -> None:
    result = manage("check", **{variable: "garbage"})
    assert_one_line(result, "Configuration error", variable)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("args", [(), ("--check",)])
def test_gateway_sync_with_redis_down_is_one_line(args: tuple[str, ...]) -> None:
    s = connection.settings_dict
    database = f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    result = manage("gateway_sync", *args, DATABASE_URL=database, REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    assert_one_line(result, "Redis")


@pytest.mark.parametrize("timeout", ["0", "-1"])
def test_doctor_refuses_a_timeout_that_bounds_nothing(timeout: str) -> None:
    result = manage("doctor", "--only", "beat", "--timeout", timeout)
    assert result.returncode == 2, result
    assert "--timeout" in result.stderr and "Traceback" not in result.stderr
