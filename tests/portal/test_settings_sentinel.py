"""The settings read a Sentinel URL for Redis and Celery's broker (portal/settings.py's Sentinel
block, gateway/plugin/redisconn.py): Celery gets kombu's form, also when the URL came in the
environment (which Celery reads before its settings), and a malformed URL is one line naming
the variable, without its password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOW = ("import json; from portal.celery import app; "
        "print(json.dumps([app.conf.broker_url, app.conf.broker_transport_options]))")


def run(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", "shell", "-c", SHOW], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", **env})


def test_celery_gets_kombus_sentinel_form_from_the_environment() -> None:
    done = run(CELERY_BROKER_URL="redis+sentinel://:pw@s1:26380,s2/portal-redis/1")
    assert done.returncode == 0, done.stderr
    broker, options = json.loads(done.stdout.strip().splitlines()[-1])
    assert broker == "sentinel://:pw@s1:26380/1;sentinel://:pw@s2:26379/1"
    assert options == {"master_name": "portal-redis"}


def test_a_malformed_sentinel_url_is_one_line_naming_the_variable() -> None:
    done = run(REDIS_URL="redis+sentinel://:hunter2@s1:26379/")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "REDIS_URL" in line]
    assert len(lines) == 1 and "/<service name>" in lines[0], done.stderr
